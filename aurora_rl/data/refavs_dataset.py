"""Reader of a Ref-AVS Bench folder (official layout, see refavs_layout.py) -> ClipSample.

A map-style dataset (``len`` and ``[i]``) that a torch DataLoader takes as is; use
``collate_clips`` as its collate_fn. Every failure raises DataError naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from aurora_rl.data import refavs_layout as layout
from aurora_rl.data.audio_features import FEATURE_KINDS
from aurora_rl.data.clip_sample import ClipSample, reader_options
from aurora_rl.data.errors import DataError
from aurora_rl.data.media_io import evenly_spaced, mask_size_mismatch, mask_to_array, open_image
from aurora_rl.data.media_prep import MediaPrep, prepare_frame, read_clip_audio
from aurora_rl.data.scene_facts import load_scene_facts


class RefAVSDataset:
    """The rows of one split of a Ref-AVS folder.

    Args:
        root: the dataset folder (holds metadata.csv, media/, gt_mask/).
        split: one of train, val, test_s, test_u, test_n.
        num_frames: frames per clip, evenly spaced over the 10 on disk.
        image_size: frames become image_size x image_size squares as ``prep`` says.
        mask_size: masks are resized (nearest) to mask_size x mask_size.
        sample_rate: audio is resampled to this rate.
        fbank_bins: mel bins of the audio features.
        max_samples: keep only the first max_samples rows of the split (CSV order).
        features: "kaldi_fbank" (BEATs, tiny) or "whisper_log_mel" (Qwen2.5-Omni).
        prep: how the backbone's released code prepares frames and audio (media_prep.py).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        num_frames: int = layout.NUM_FRAMES,
        image_size: int = 64,
        mask_size: int = 64,
        sample_rate: int = 16000,
        fbank_bins: int = 128,
        max_samples: Optional[int] = None,
        features: str = "kaldi_fbank",
        prep: MediaPrep = MediaPrep(),
    ):
        if split not in layout.SPLITS:
            raise ValueError(f"unknown Ref-AVS split {split!r} (expected one of {', '.join(layout.SPLITS)})")
        if not 1 <= num_frames <= layout.NUM_FRAMES:
            raise ValueError(f"num_frames must be in 1..{layout.NUM_FRAMES} for Ref-AVS, got {num_frames}")
        if features not in FEATURE_KINDS:
            raise ValueError(f"unknown audio features {features!r} (known: {', '.join(FEATURE_KINDS)})")
        self.root = Path(root)
        self.split = split
        self.rows = [r for r in layout.read_metadata(self.root) if r.split == split][:max_samples]
        self.facts = load_scene_facts(self.root)
        self.frame_indices = evenly_spaced(layout.NUM_FRAMES, num_frames)
        self.image_size = image_size
        self.mask_size = mask_size
        self.sample_rate = sample_rate
        self.fbank_bins = fbank_bins
        self.features = features
        self.prep = prep

    @classmethod
    def from_config(cls, cfg, split: str, **overrides) -> "RefAVSDataset":
        """Build from a ``DataConfig`` (root, num_frames, image_size, mask_size, sample_rate,
        fbank_bins, max_samples); keyword overrides win (e.g. features="whisper_log_mel")."""
        return cls(cfg.root, split, **reader_options(cfg, overrides))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> ClipSample:
        if not 0 <= index < len(self.rows):
            raise IndexError(f"index {index} out of range for {len(self.rows)} rows of split {self.split}")
        return self.load(self.rows[index])

    def load(self, row: layout.RefAVSRow) -> ClipSample:
        frames, masks = [], []
        for i in self.frame_indices:
            fpath = layout.frame_path(self.root, row.vid, i)
            frame = open_image(fpath)
            mpath = layout.mask_path(self.root, row.vid, row.fid, i)
            mask = open_image(mpath)
            if mask.size != frame.size:
                raise DataError(mpath, mask_size_mismatch(mask.size, fpath, frame.size))
            pixels, box = prepare_frame(frame, self.image_size, self.prep)
            frames.append(pixels)
            masks.append(mask_to_array(mask, self.mask_size))
        wav, fbank = read_clip_audio(layout.audio_path(self.root, row.vid), self.prep, self.sample_rate,
                                     self.features, self.fbank_bins)
        facts = self.facts.get(row.uid)
        is_null = row.split == layout.NULL_SPLIT or (facts is not None and facts["expression_kind"] == "null")
        return ClipSample(
            uid=row.uid,
            row=row.line,
            vid=row.vid,
            fid=row.fid,
            split=row.split,
            expression=row.exp,
            frames=np.stack(frames),
            frame_box=box,
            audio=wav,
            fbank=fbank,
            masks=np.stack(masks),
            mask_valid=np.ones(len(self.frame_indices), dtype=bool),
            is_null=is_null,
            facts=facts,
        )
