"""Reader of AVSBench (v1) for unreferenced audio-visual segmentation: S4 and MS3 layouts.

Every clip gets the fixed expression "the sounding object", so the same model and prompts serve
both benchmarks. Layouts, as the official AVSBench scripts read them (5 frames per clip):

```
S4  ROOT/s4_meta_data.csv                          name,...,category,split
    ROOT/s4_data/visual_frames/<split>/<category>/<name>/<name>_<1..5>.png
    ROOT/s4_data/audio_wav/<split>/<category>/<name>.wav
    ROOT/s4_data/gt_masks/<split>/<category>/<name>/<name>_<k>.png   k = 1 (train) or 1..5
MS3 ROOT/ms3_meta_data.csv                         <name>,...,split  (first column = name)
    ROOT/ms3_data/visual_frames/<name>/<name>.mp4_<1..5>.png
    ROOT/ms3_data/audio_wav/<split>/<name>.wav
    ROOT/ms3_data/gt_masks/<split>/<name>/<name>_<1..5>.png
```
S4 train annotates only the first frame: the other frames get an empty mask and
``mask_valid = False``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from aurora_rl.data.audio_features import FEATURE_KINDS
from aurora_rl.data.clip_sample import ClipSample, reader_options
from aurora_rl.data.csv_records import csv_records
from aurora_rl.data.errors import DataError, Problem
from aurora_rl.data.media_io import evenly_spaced, mask_size_mismatch, mask_to_array, open_image
from aurora_rl.data.media_prep import MediaPrep, prepare_frame, read_clip_audio

EXPRESSION = "the sounding object"
SPLITS = ("train", "val", "test")
NUM_FRAMES = 5
VARIANTS = ("s4", "ms3")


@dataclass(frozen=True)
class AVSBenchRow:
    name: str
    category: str  # S4 only; "" for MS3
    split: str
    line: int

    @property
    def uid(self) -> str:
        """The sample's uid (``ClipSample.uid``): the video name."""
        return self.name


def is_folder_name(text: str) -> bool:
    """A name and category become folders under the dataset root: a separator or a dot name would
    lead outside it."""
    return text not in (".", "..") and "/" not in text and "\\" not in text


class AVSBenchLayout:
    """Paths of one AVSBench variant ("s4" or "ms3") under ``root``."""

    def __init__(self, root: str | Path, variant: str):
        if variant not in VARIANTS:
            raise ValueError(f"unknown AVSBench variant {variant!r} (expected s4 or ms3)")
        self.root = Path(root)
        self.variant = variant
        self.data = self.root / f"{variant}_data"

    @property
    def csv_path(self) -> Path:
        return self.root / f"{self.variant}_meta_data.csv"

    def _clip_dir(self, kind: str, row: AVSBenchRow) -> Path:
        if self.variant == "s4":
            return self.data / kind / row.split / row.category / row.name
        return self.data / kind / row.split / row.name

    def frame_path(self, row: AVSBenchRow, index: int) -> Path:
        """Frame ``index`` (0-based) of a clip."""
        if self.variant == "s4":
            return self._clip_dir("visual_frames", row) / f"{row.name}_{index + 1}.png"
        return self.data / "visual_frames" / row.name / f"{row.name}.mp4_{index + 1}.png"

    def audio_path(self, row: AVSBenchRow) -> Path:
        return self._clip_dir("audio_wav", row).with_suffix(".wav")

    def mask_path(self, row: AVSBenchRow, index: int) -> Path:
        return self._clip_dir("gt_masks", row) / f"{row.name}_{index + 1}.png"

    def annotated_frames(self, row: AVSBenchRow) -> list[int]:
        return [0] if (self.variant == "s4" and row.split == "train") else list(range(NUM_FRAMES))

    def parse_metadata(self) -> tuple[list[AVSBenchRow], list[Problem]]:
        """Read the CSV -> (good rows, problems naming the CSV and line)."""
        path = str(self.csv_path)
        try:
            lines = self.csv_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return [], [Problem("metadata", path, "metadata file is missing")]
        except (OSError, UnicodeDecodeError) as e:
            return [], [Problem("metadata", path, f"cannot read metadata ({e})")]
        records = csv_records(lines)
        _, first = next(records, (1, []))
        header = [h.strip() for h in first] if isinstance(first, list) else []
        need = ["split"] + (["category"] if self.variant == "s4" else [])
        missing = [c for c in need if c not in header]
        if not header or missing:
            return [], [Problem("metadata", path, f"line 1: header lacks column(s) {', '.join(missing or need)}")]
        name_col = header.index("name") if "name" in header else 0
        rows, problems = [], []
        for line, fields in records:
            if isinstance(fields, csv.Error):
                problems.append(Problem("bad_row", path, f"line {line}: cannot read the row ({fields})"))
                continue
            if not fields:
                continue
            if len(fields) != len(header):
                problems.append(Problem("bad_row", path, f"line {line}: expected {len(header)} columns, got {len(fields)}"))
                continue
            rec = dict(zip(header, (f.strip() for f in fields)))
            name, split = fields[name_col].strip(), rec["split"]
            folders = (("video name", name), ("category", rec.get("category", "")))
            unsafe = [f"{what} {text!r}" for what, text in folders if not is_folder_name(text)]
            if not name:
                problems.append(Problem("bad_row", path, f"line {line}: empty video name"))
            elif unsafe:
                problems.append(Problem("bad_row", path, f"line {line}: {unsafe[0]} is not a folder name "
                                                         "(it holds '/' or '\\', or is '.' or '..')"))
            elif split not in SPLITS:
                message = f"line {line}: unknown split {split!r} (expected one of {', '.join(SPLITS)})"
                problems.append(Problem("unknown_split", path, message))
            else:
                rows.append(AVSBenchRow(name, rec.get("category", ""), split, line))
        return rows, problems


class AVSBenchDataset:
    """One split of AVSBench S4 or MS3 as ClipSamples (uid = vid = video name, fid = 0).

    Args mirror RefAVSDataset; ``num_frames`` is capped at the 5 frames AVSBench has.
    """

    def __init__(
        self,
        root: str | Path,
        variant: str,
        split: str,
        *,
        num_frames: int = NUM_FRAMES,
        image_size: int = 64,
        mask_size: int = 64,
        sample_rate: int = 16000,
        fbank_bins: int = 128,
        max_samples: Optional[int] = None,
        features: str = "kaldi_fbank",
        prep: MediaPrep = MediaPrep(),
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown AVSBench split {split!r} (expected one of {', '.join(SPLITS)})")
        if features not in FEATURE_KINDS:
            raise ValueError(f"unknown audio features {features!r} (known: {', '.join(FEATURE_KINDS)})")
        self.layout = AVSBenchLayout(root, variant)
        rows, problems = self.layout.parse_metadata()
        if problems:
            lines = "\n  ".join(p.message for p in problems[:5])
            raise DataError(self.layout.csv_path, f"bad metadata:\n  {lines}")
        self.split = split
        self.rows = [r for r in rows if r.split == split][:max_samples]
        self.frame_indices = evenly_spaced(NUM_FRAMES, min(num_frames, NUM_FRAMES))
        self.image_size = image_size
        self.mask_size = mask_size
        self.sample_rate = sample_rate
        self.fbank_bins = fbank_bins
        self.features = features
        self.prep = prep

    @classmethod
    def from_config(cls, cfg, split: str, **overrides) -> "AVSBenchDataset":
        """Build from a ``DataConfig`` whose layout is avsbench-s4 or avsbench-ms3."""
        return cls(cfg.root, cfg.layout.removeprefix("avsbench-"), split, **reader_options(cfg, overrides))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> ClipSample:
        if not 0 <= index < len(self.rows):
            raise IndexError(f"index {index} out of range for {len(self.rows)} rows of split {self.split}")
        return self.load(self.rows[index])

    def load(self, row: AVSBenchRow) -> ClipSample:
        annotated = set(self.layout.annotated_frames(row))
        frames, masks, valid = [], [], []
        for i in self.frame_indices:
            fpath = self.layout.frame_path(row, i)
            frame = open_image(fpath)
            pixels, box = prepare_frame(frame, self.image_size, self.prep)
            frames.append(pixels)
            if i not in annotated:
                masks.append(np.zeros((self.mask_size, self.mask_size), dtype=np.uint8))
                valid.append(False)
                continue
            mpath = self.layout.mask_path(row, i)
            mask = open_image(mpath)
            if mask.size != frame.size:
                raise DataError(mpath, mask_size_mismatch(mask.size, fpath, frame.size))
            masks.append(mask_to_array(mask, self.mask_size))
            valid.append(True)
        wav, fbank = read_clip_audio(self.layout.audio_path(row), self.prep, self.sample_rate, self.features,
                                     self.fbank_bins)
        return ClipSample(
            uid=row.name,
            row=row.line,
            vid=row.name,
            fid=0,
            split=row.split,
            expression=EXPRESSION,
            frames=np.stack(frames),
            frame_box=box,
            audio=wav,
            fbank=fbank,
            masks=np.stack(masks),
            mask_valid=np.array(valid, dtype=bool),
            is_null=False,
            facts=None,
        )
