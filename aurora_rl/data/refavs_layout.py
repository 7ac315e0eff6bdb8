"""The official Ref-AVS Bench on-disk layout: where each file is, and the metadata CSV.

```
ROOT/metadata.csv                                  vid,uid,split,fid,exp
ROOT/media/<vid>/frames/0.jpg .. 9.jpg             10 frames, one per second
ROOT/media/<vid>/audio.wav                         the clip's audio
ROOT/gt_mask/<vid>/fid_<fid>/00000.png .. 00009.png  masks of object <fid>, one per frame
ROOT/scene_facts.jsonl                             synthetic data only (see scene_facts.py)
```
The folder vid is ``uid.rsplit('_', 2)[0]`` (uids are ``<vid>_<class>_<n>`` and a YouTube id
may itself contain underscores); like the official loader we derive it from the uid and do not
trust the CSV's vid column. Null rows (split test_n) point at masks that are all empty.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from aurora_rl.data.errors import DataError, Problem

SPLITS = ("train", "val", "test_s", "test_u", "test_n")
NULL_SPLIT = "test_n"
NUM_FRAMES = 10
COLUMNS = ("vid", "uid", "split", "fid", "exp")


def folder_vid(uid: str) -> str:
    """The media folder of a uid: everything before its last two underscores."""
    return uid.rsplit("_", 2)[0]


def uid_class(uid: str) -> str:
    """The class token of a uid (``<vid>_<class>_<n>``)."""
    return uid.rsplit("_", 2)[1]


def metadata_path(root: str | Path) -> Path:
    return Path(root) / "metadata.csv"


def frame_path(root: str | Path, vid: str, index: int) -> Path:
    return Path(root) / "media" / vid / "frames" / f"{index}.jpg"


def audio_path(root: str | Path, vid: str) -> Path:
    return Path(root) / "media" / vid / "audio.wav"


def mask_dir(root: str | Path, vid: str, fid: int) -> Path:
    return Path(root) / "gt_mask" / vid / f"fid_{fid}"


def mask_path(root: str | Path, vid: str, fid: int, index: int) -> Path:
    return mask_dir(root, vid, fid) / f"{index:05d}.png"


@dataclass(frozen=True)
class RefAVSRow:
    """One metadata.csv row. ``vid`` is the folder vid derived from the uid; ``line`` is 1-based."""

    vid: str
    uid: str
    split: str
    fid: int
    exp: str
    line: int


def parse_metadata(root: str | Path) -> tuple[list[RefAVSRow], list[Problem]]:
    """Read metadata.csv -> (good rows, problems). Problems name the CSV and the line.

    Rows with a problem are left out of the returned rows; a missing or header-less file gives
    no rows and one problem. Kinds: "metadata" (file or header), "bad_row", "unknown_split".
    """
    path = metadata_path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], [Problem("metadata", str(path), "metadata file is missing")]
    except (OSError, UnicodeDecodeError) as e:
        return [], [Problem("metadata", str(path), f"cannot read metadata ({e})")]
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or [h.strip() for h in header[: len(COLUMNS)]] != list(COLUMNS):
        got = ",".join(header or [])
        return [], [Problem("metadata", str(path), f"line 1: header must start with {','.join(COLUMNS)}, got {got!r}")]
    rows, problems, seen = [], [], {}
    for line, fields in enumerate(reader, start=2):
        if not fields:
            continue

        def bad(message: str, kind: str = "bad_row") -> None:
            problems.append(Problem(kind, str(path), f"line {line}: {message}"))

        if len(fields) != len(header):
            bad(f"expected {len(header)} columns, got {len(fields)} (unquoted comma?)")
            continue
        _, uid, split, fid_text, exp = (f.strip() for f in fields[: len(COLUMNS)])
        before = len(problems)
        if uid.count("_") < 2 or not all(uid.rsplit("_", 2)):
            bad(f"uid {uid!r} is not <vid>_<class>_<n>")
        if split not in SPLITS:
            bad(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})", "unknown_split")
        if not fid_text.isdigit():
            bad(f"fid {fid_text!r} is not a non-negative integer")
        if not exp:
            bad("empty expression")
        if uid in seen:
            bad(f"duplicate uid {uid!r} (first at line {seen[uid]})")
        if len(problems) > before:
            continue
        seen[uid] = line
        rows.append(RefAVSRow(folder_vid(uid), uid, split, int(fid_text), exp, line))
    return rows, problems


def read_metadata(root: str | Path) -> list[RefAVSRow]:
    """Read metadata.csv; raise DataError (naming the file and the first bad lines) on any problem."""
    rows, problems = parse_metadata(root)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        lines = "\n  ".join(p.message for p in problems[:5])
        raise DataError(metadata_path(root), f"bad metadata:\n  {lines}{more}")
    return rows
