"""The official Ref-AVS Bench on-disk layout: where each file is, and the metadata CSV.

```
ROOT/metadata.csv                                  vid,uid,split,fid,exp
ROOT/media/<vid>/frames/0.jpg .. 9.jpg             10 frames, one per second
ROOT/media/<vid>/audio.wav                         the clip's audio
ROOT/gt_mask/<vid>/fid_<fid>/00000.png .. 00009.png  masks of object <fid>, one per frame
ROOT/scene_facts.jsonl                             synthetic data only (see scene_facts.py)
```
The folder vid is ``uid.rsplit('_', 2)[0]`` (uids are ``<vid>_<class>_<n>`` and a YouTube id
may itself contain underscores, or begin with ``-``); like the official loader we derive it from
the uid and do not trust the CSV's vid column. Null rows (split test_n) point at masks that are
all empty. A uid holds only the characters of the official ones (ASCII letters, digits, ``-``,
``_``): the vid becomes a folder name, so a uid with ``/`` or ``.`` could name files outside the
dataset folder, and is refused.

As released, the official metadata has rows of a split that is none of the five (``TODO``),
which the official loader never reads: they are skipped and counted. A uid may occur twice (the
same clip with another expression or another object): each row is a sample of its own, so every
store of samples is keyed by the row (its CSV line, ``RefAVSRow.line``), not by the uid.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aurora_rl.data.csv_records import csv_records
from aurora_rl.data.errors import DataError, Problem

SPLITS = ("train", "val", "test_s", "test_u", "test_n")
NULL_SPLIT = "test_n"
NUM_FRAMES = 10
COLUMNS = ("vid", "uid", "split", "fid", "exp")
MAX_EXPRESSION_CHARS = 1000  # the official expressions are one sentence (under 200 characters)
# <vid>_<class>_<n>: the vid takes everything before the last two underscores (the groups are
# greedy). Only the vid names a folder, so only it is held to the official ids' characters; the
# middle part may hold any character but the underscore and path separators (a space, say).
UID = re.compile(r"([A-Za-z0-9_-]+)_[^_/\\\x00]+_[A-Za-z0-9-]+")


def folder_vid(uid: str) -> str:
    """The media folder of a uid: everything before its last two underscores. ValueError for a
    uid of other characters than the official ones (it could name a folder outside the dataset)."""
    match = UID.fullmatch(uid)
    if match is None:
        raise ValueError(f"uid {uid!r} is not <vid>_<class>_<n> with a vid of ASCII letters, digits, '-' and '_'")
    return match.group(1)


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
    """One metadata.csv row. ``vid`` is the folder vid derived from the uid; ``line`` (1-based) is
    the row's identity: uids repeat in the official metadata."""

    vid: str
    uid: str
    split: str
    fid: int
    exp: str
    line: int


@dataclass
class Metadata:
    """A metadata.csv as read: the good rows, the problems (naming the CSV and the line), and the
    rows of unknown splits that were skipped, counted by split name."""

    rows: list[RefAVSRow]
    problems: list[Problem]
    skipped: Counter = field(default_factory=Counter)


def parse_metadata(root: str | Path) -> Metadata:
    """Read metadata.csv. Rows with a problem are left out of ``rows``; a missing or header-less
    file gives no rows and one problem. Kinds: "metadata" (file or header), "bad_row". Rows of a
    split that is none of ``SPLITS`` (the official file has ``TODO``) are skipped and counted."""
    path = metadata_path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Metadata([], [Problem("metadata", str(path), "metadata file is missing")])
    except (OSError, UnicodeDecodeError) as e:
        return Metadata([], [Problem("metadata", str(path), f"cannot read metadata ({e})")])
    records = csv_records(text.splitlines())
    _, header = next(records, (1, None))
    if not isinstance(header, list) or [h.strip() for h in header[: len(COLUMNS)]] != list(COLUMNS):
        got = ",".join(header) if isinstance(header, list) else f"an unreadable line ({header})"
        return Metadata([], [Problem("metadata", str(path),
                                     f"line 1: header must start with {','.join(COLUMNS)}, got {got!r}")])
    out = Metadata([], [])
    for line, fields in records:
        def bad(message: str) -> None:
            out.problems.append(Problem("bad_row", str(path), f"line {line}: {message}"))

        if isinstance(fields, csv.Error):
            bad(f"cannot read the row ({fields})")
            continue
        if not fields:
            continue
        if len(fields) != len(header):
            bad(f"expected {len(header)} columns, got {len(fields)} (unquoted comma?)")
            continue
        _, uid, split, fid_text, exp = (f.strip() for f in fields[: len(COLUMNS)])
        if split not in SPLITS:
            out.skipped[split] += 1
            continue
        before = len(out.problems)
        if not UID.fullmatch(uid):
            bad(f"uid {uid!r} is not <vid>_<class>_<n> with a vid of ASCII letters, digits, '-' and '_'")
        if not (fid_text.isascii() and fid_text.isdigit()):
            bad(f"fid {fid_text!r} is not a non-negative integer")
        if not exp:
            bad("empty expression")
        elif len(exp) > MAX_EXPRESSION_CHARS:
            bad(f"expression of {len(exp)} characters (at most {MAX_EXPRESSION_CHARS})")
        if len(out.problems) == before:
            out.rows.append(RefAVSRow(folder_vid(uid), uid, split, int(fid_text), exp, line))
    return out


def skipped_note(skipped: Counter) -> str:
    """One line for the rows skipped for their split, e.g. "25 rows of split 'TODO' skipped"."""
    parts = [f"{n} row{'s' * (n != 1)} of split {split!r}" for split, n in sorted(skipped.items())]
    return f"{', '.join(parts)} skipped (not one of {', '.join(SPLITS)})"


def read_metadata(root: str | Path) -> list[RefAVSRow]:
    """The rows of metadata.csv (those of unknown splits skipped); DataError naming the file and the
    first bad lines on any problem."""
    metadata = parse_metadata(root)
    rows, problems = metadata.rows, metadata.problems
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        lines = "\n  ".join(p.message for p in problems[:5])
        raise DataError(metadata_path(root), f"bad metadata:\n  {lines}{more}")
    return rows
