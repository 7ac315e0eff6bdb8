"""Checkpoint folders that are either complete or absent: written aside, verified, renamed.

A GRPO checkpoint ``<run>/checkpoints/step_N`` is written into ``.step_N.partial`` (every
learner rank's DeepSpeed state, rank 0's policy, the driver's ``job_state.json``), then the
driver lists every file with its size and SHA-256 in ``manifest.json``, flushes them to disk and
renames the folder into place; ``latest`` is replaced the same way (a temporary file, fsync,
rename). A process killed or a disk filled at any moment leaves the previous checkpoint and
``latest`` as they were, and at worst a ``.partial`` folder, which is ignored and cleared.

On resume, ``newest_complete`` takes the folder ``latest`` names if its manifest holds (every
file there with its size and hash), else the newest that does, and says what it skipped and why.
Final exports (``<run>/checkpoint``) are replaced whole: the new copy is made aside and a link
swapped to it, so the run never lacks one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Optional

from aurora_rl.services.files import write_whole

MANIFEST = "manifest.json"
LATEST = "latest"


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_tree(folder: Path) -> None:
    """Every file and folder under ``folder`` on disk (a rename after this cannot expose a hole)."""
    for path in sorted(folder.rglob("*")) + [folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_manifest(folder: Path) -> dict:
    """``manifest.json``: each file's size and SHA-256, relative to ``folder``."""
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": file_hash(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))
    return files


def problems(folder: Path) -> list[str]:
    """What is wrong with a checkpoint folder (empty: complete, as its manifest says)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return [f"{manifest} is missing (the checkpoint was never completed)"]
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError) as e:
        return [f"{manifest} is unreadable ({type(e).__name__})"]
    found = []
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            found.append(f"{name} is missing")
        elif path.stat().st_size != want["bytes"]:
            found.append(f"{name} has {path.stat().st_size} bytes, the manifest says {want['bytes']}")
        elif file_hash(path) != want["sha256"]:
            found.append(f"{name} does not match its SHA-256")
    return found


def partial_folder(checkpoints: Path, name: str) -> Path:
    """An empty folder to write checkpoint ``name`` into (an older partial one is cleared)."""
    partial = checkpoints / f".{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def commit(partial: Path, name: str) -> Path:
    """Manifest, flush and rename ``partial`` to ``<checkpoints>/<name>``, then point ``latest`` at
    it. A folder of that name (a step redone after a learner restart) is replaced."""
    write_manifest(partial)
    fsync_tree(partial)
    final = partial.parent / name
    if final.exists():
        old = partial.parent / f".{name}.replaced"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old)
    else:
        os.replace(partial, final)
    write_whole(partial.parent / LATEST, name)
    return final


def newest_complete(checkpoints: Path, log: Callable[[str], None]) -> Optional[Path]:
    """The checkpoint to resume from: the one ``latest`` names if complete, else the newest
    complete one (each skipped folder named with why); None when there is none."""
    if not checkpoints.is_dir():
        return None
    pointer = checkpoints / LATEST
    named = pointer.read_text().strip() if pointer.is_file() else ""
    candidates = sorted((p for p in checkpoints.glob("step_*") if p.is_dir()), reverse=True)
    if named and (checkpoints / named).is_dir():
        candidates = [checkpoints / named] + [c for c in candidates if c != checkpoints / named]
    elif pointer.exists():
        log(f"[checkpoint] {pointer} names {repr(named) if named else 'nothing'}, no checkpoint folder: looking for "
            "the newest complete one")
    for folder in candidates:
        wrong = problems(folder)
        if not wrong:
            return folder
        log(f"[checkpoint] skipping {folder}: {'; '.join(wrong[:3])}")
    return None


def replace_tree(dest: Path, fill: Callable[[Path], None]) -> Path:
    """``dest`` becomes what ``fill(folder)`` writes into a new folder beside it, in one step.

    ``dest`` is a symbolic link to its current folder (``.<name>.<hex>``): the new folder is
    written and flushed, then a new link replaces the old by a rename, so ``dest`` is never
    missing or half-written; the old folder is removed afterwards. A ``dest`` that is still a
    plain folder (written before) is swapped by two renames instead.
    """
    target = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}")
    fill(target)
    fsync_tree(target)
    old = dest.resolve() if dest.is_symlink() else None
    if dest.exists() and not dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
    link = dest.with_name(f".{dest.name}.link")
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target.name, link)  # relative: the run folder may move
    os.replace(link, dest)
    if old is not None and old != target and old.exists():
        shutil.rmtree(old)
    return dest


def refuse_foreign_folder(folder: Path) -> None:
    """A run folder to resume from must be the user's own and writable by nobody else: anyone who
    can write it can plant the state a resume loads (PermissionError, naming the folder)."""
    for path in [folder, *(p for p in (folder / "checkpoints",) if p.is_dir())]:
        st = path.stat()
        if st.st_uid != os.getuid():
            raise PermissionError(f"{path} belongs to user id {st.st_uid}, not to this user ({os.getuid()}): "
                                  "refusing to resume from a folder another user controls")
        if st.st_mode & 0o002:
            raise PermissionError(f"{path} is writable by every user (mode {st.st_mode & 0o777:o}): refusing to "
                                  f"resume from it; chmod o-w {path}")
