"""``aurora-rl data validate``: check every row and every file of a dataset, report all problems.

Problem kinds: metadata, bad_row, unknown_split (the CSV; Ref-AVS rows of an unknown split are
skipped and counted in the report's notes instead, as the official loader never reads them); missing_frame, unreadable_frame,
frame_count, frame_size (frames); missing_audio, unreadable_audio, silent_audio (the wav);
missing_mask, unreadable_mask, mask_count, mask_size, non_binary_mask, null_mask_not_empty
(masks); facts (scene_facts.jsonl). Every problem names the file at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from aurora_rl.data import refavs_layout as layout
from aurora_rl.data.audio_features import read_wav
from aurora_rl.data.avsbench_dataset import NUM_FRAMES as AVS_NUM_FRAMES
from aurora_rl.data.avsbench_dataset import AVSBenchLayout
from aurora_rl.data.errors import DataError, Problem
from aurora_rl.data.media_io import mask_size_mismatch, open_image
from aurora_rl.data.scene_facts import facts_path, load_scene_facts

SILENCE_PEAK = 1e-4  # a wav whose absolute peak stays below this (about 3 LSB of 16-bit) is silent
LAYOUT_FILES = {"refavs": "metadata.csv", "avsbench-s4": "s4_meta_data.csv", "avsbench-ms3": "ms3_meta_data.csv"}


@dataclass
class ValidationReport:
    layout: str
    rows: int
    files_checked: int
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)  # what was skipped on purpose (not a problem)


class _Checks:
    """Accumulates problems and the number of files looked at."""

    def __init__(self):
        self.problems: list[Problem] = []
        self.files = 0

    def add(self, kind: str, path, message: str) -> None:
        self.problems.append(Problem(kind, str(path), message))

    def _image(self, path: Path, what: str):
        self.files += 1
        if not path.exists():
            self.add(f"missing_{what}", path, f"{what} file is missing")
            return None
        try:
            return open_image(path)
        except DataError as e:
            self.add(f"unreadable_{what}", path, e.message)
            return None

    def _extras(self, expected: list[Path], kind: str, what: str) -> None:
        """Files beside the expected ones, with the same suffix, are extra."""
        for folder in sorted({p.parent for p in expected}):
            if not folder.is_dir():
                continue
            wanted = {p.name for p in expected if p.parent == folder}
            suffix = expected[0].suffix
            extra = sorted(f.name for f in folder.iterdir() if f.suffix == suffix and f.name not in wanted)
            if extra:
                message = f"expected {len(wanted)} {what} files, found {len(wanted) + len(extra)}"
                self.add(kind, folder, f"{message} (extra: {', '.join(extra[:5])})")

    def frames(self, paths: list[Path]) -> list[Optional[tuple[int, int]]]:
        """Check frames; return each frame's (width, height), None where unreadable."""
        sizes = []
        for p in paths:
            img = self._image(p, "frame")
            sizes.append(None if img is None else img.size)
        self._extras(paths, "frame_count", "frame")
        known = {s for s in sizes if s is not None}
        if len(known) > 1:
            sizes_text = ", ".join(f"{w}x{h}" for w, h in sorted(known))
            self.add("frame_size", paths[0].parent, f"frames differ in size: {sizes_text}")
        return sizes

    def audio(self, path: Path) -> None:
        self.files += 1
        if not path.exists():
            self.add("missing_audio", path, "audio file is missing")
            return
        try:
            wav, _ = read_wav(path)
        except DataError as e:
            self.add("unreadable_audio", path, e.message)
            return
        peak = float(np.abs(wav).max()) if wav.size else 0.0
        if peak < SILENCE_PEAK:
            self.add("silent_audio", path, f"audio is silent (peak {peak:.2e}, {wav.size} samples)")

    def masks(self, paths: list[Path], frame_sizes: list, frame_paths: list[Path], must_be_empty: bool) -> None:
        """Check masks against their frames' sizes; ``must_be_empty`` for null expressions."""
        for p, size, fpath in zip(paths, frame_sizes, frame_paths):
            img = self._image(p, "mask")
            if img is None:
                continue
            if size is not None and img.size != size:
                self.add("mask_size", p, mask_size_mismatch(img.size, fpath, size))
            a = np.asarray(img)
            values = np.unique(a.reshape(-1, a.shape[-1]) if a.ndim == 3 else a.ravel(), axis=0)
            foreground = values[values.reshape(len(values), -1).any(axis=1)]
            if len(foreground) > 1:  # background plus more than one foreground value or colour
                shown = ", ".join(str(v.tolist()) for v in values[:6]) + (", ..." if len(values) > 6 else "")
                self.add("non_binary_mask", p, f"mask is not binary: {len(values)} distinct values ({shown})")
            elif must_be_empty and len(foreground):
                self.add("null_mask_not_empty", p, "mask of a null expression has foreground pixels")
        self._extras(paths, "mask_count", "mask")


def _check_facts(root: Path, uids: Iterable[str], checks: _Checks) -> None:
    path = facts_path(root)
    if not path.exists():
        return
    checks.files += 1
    try:
        facts = load_scene_facts(root)
    except DataError as e:
        checks.add("facts", path, e.message)
        return
    uids = set(uids)
    missing = sorted(uids - facts.keys())
    unknown = sorted(facts.keys() - uids)
    if missing:
        checks.add("facts", path, f"{len(missing)} uid(s) of metadata.csv have no facts, e.g. {missing[0]}")
    if unknown:
        checks.add("facts", path, f"{len(unknown)} uid(s) are not in metadata.csv, e.g. {unknown[0]}")


def validate_refavs(root: str | Path) -> ValidationReport:
    """Check a Ref-AVS folder: the CSV, every frame, wav and mask, and the scene facts if present."""
    root = Path(root)
    checks = _Checks()
    metadata = layout.parse_metadata(root)
    rows = metadata.rows
    checks.problems += metadata.problems
    checks.files += 1
    facts = {}
    try:
        facts = load_scene_facts(root)
    except DataError:
        pass  # reported by _check_facts
    frame_sizes: dict[str, list] = {}
    frame_paths = {}
    for vid in dict.fromkeys(r.vid for r in rows):
        frame_paths[vid] = [layout.frame_path(root, vid, i) for i in range(layout.NUM_FRAMES)]
        frame_sizes[vid] = checks.frames(frame_paths[vid])
        checks.audio(layout.audio_path(root, vid))
    null_of: dict[tuple[str, int], bool] = {}
    for r in rows:
        is_null = r.split == layout.NULL_SPLIT or facts.get(r.uid, {}).get("expression_kind") == "null"
        null_of[(r.vid, r.fid)] = null_of.get((r.vid, r.fid), False) or is_null
    for (vid, fid), is_null in null_of.items():
        paths = [layout.mask_path(root, vid, fid, i) for i in range(layout.NUM_FRAMES)]
        checks.masks(paths, frame_sizes[vid], frame_paths[vid], must_be_empty=is_null)
    _check_facts(root, list(dict.fromkeys(r.uid for r in rows)), checks)
    notes = [layout.skipped_note(metadata.skipped)] if metadata.skipped else []
    return ValidationReport("refavs", len(rows), checks.files, checks.problems, notes)


def validate_avsbench(root: str | Path, variant: str) -> ValidationReport:
    """Check an AVSBench S4 or MS3 folder (see avsbench_dataset.py for the layout)."""
    lay = AVSBenchLayout(root, variant)
    checks = _Checks()
    rows, problems = lay.parse_metadata()
    checks.problems += problems
    checks.files += 1
    for row in rows:
        fpaths = [lay.frame_path(row, i) for i in range(AVS_NUM_FRAMES)]
        sizes = checks.frames(fpaths)
        checks.audio(lay.audio_path(row))
        annotated = lay.annotated_frames(row)
        mpaths = [lay.mask_path(row, i) for i in annotated]
        checks.masks(mpaths, [sizes[i] for i in annotated], [fpaths[i] for i in annotated], must_be_empty=False)
    return ValidationReport(f"avsbench-{variant}", len(rows), checks.files, checks.problems)


def detect_layout(root: str | Path) -> Optional[str]:
    """"refavs", "avsbench-s4" or "avsbench-ms3" by the metadata file present; None if none is."""
    for name, filename in LAYOUT_FILES.items():
        if (Path(root) / filename).exists():
            return name
    return None


def validate_dataset(root: str | Path, layout_name: Optional[str] = None) -> ValidationReport:
    """Validate ``root`` with the given layout, or the one detected from its metadata file."""
    layout_name = layout_name or detect_layout(root) or "refavs"
    if layout_name == "refavs":
        return validate_refavs(root)
    if layout_name in ("avsbench-s4", "avsbench-ms3"):
        return validate_avsbench(root, layout_name.removeprefix("avsbench-"))
    raise ValueError(f"unknown layout {layout_name!r} (known: {', '.join(LAYOUT_FILES)})")
