"""Small files replaced in one step (job.json, the Redis URL, ``latest``, redis.conf)."""

from __future__ import annotations

import os
from pathlib import Path


def write_whole(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text``: a temporary file beside it, created with ``mode`` (so a
    private file is never readable by others, not even for a moment), flushed to disk, renamed
    over ``path``, and the folder flushed. A reader sees the old text or the new, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
