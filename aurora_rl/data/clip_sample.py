"""One Ref-AVS training/evaluation example and how a batch of them is stacked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass
class ClipSample:
    """A clip, its audio, one referring expression and the mask of its referent in every frame.

    Attributes:
        uid: id of the (clip, expression) pair, e.g. ``-1HyqEM_VwM_137000_147000_piano_1``; it can
            occur on more than one row of the official metadata.
        row: the sample's identity: its line in the metadata CSV. Every store of samples (ground
            truth, predictions, CoT, corrections) is keyed by it.
        vid: the media folder, ``uid.rsplit('_', 2)[0]``.
        fid: which object's masks (``gt_mask/<vid>/fid_<fid>/``).
        split: train / val / test_s / test_u / test_n (AVSBench: train / val / test).
        expression: the referring expression (AVSBench: the fixed "the sounding object").
        frames: float32 [T, 3, H, W] in [0, 1], H = W = image_size, made as the backbone's
            released code makes them (media_prep.py).
        frame_box: (top, left, height, width) of the picture inside each frame square (the whole
            square unless the frames were padded to it); masks cover the picture only.
        audio: float32 [N] mono waveform in [-1, 1] at 16 kHz (the configured sample rate).
        fbank: float32 [num_fbank_frames, fbank_bins] audio features (see audio_features.py).
        masks: uint8 [T, mask_size, mask_size] in {0, 1}.
        mask_valid: bool [T]; False where a frame has no annotation (AVSBench S4 train labels
            only the first frame). Losses and metrics must skip invalid frames.
        is_null: the expression refers to nothing in the clip (all masks empty by construction).
        facts: the scene facts of a synthetic clip (see synthetic/), None for real data.
    """

    uid: str
    row: int
    vid: str
    fid: int
    split: str
    expression: str
    frames: np.ndarray
    audio: np.ndarray
    fbank: np.ndarray
    masks: np.ndarray
    mask_valid: np.ndarray
    is_null: bool
    facts: Optional[dict[str, Any]] = None
    frame_box: Optional[tuple[int, int, int, int]] = None


def reader_options(cfg, overrides: dict) -> dict:
    """The reader keyword arguments a ``DataConfig`` gives (both layouts); ``overrides`` win."""
    return {
        "num_frames": cfg.num_frames, "image_size": cfg.image_size, "mask_size": cfg.mask_size,
        "sample_rate": cfg.sample_rate, "fbank_bins": cfg.fbank_bins, "max_samples": cfg.max_samples,
        **overrides,
    }


def collate_clips(items: list) -> dict[str, Any]:
    """Stack ClipSamples into torch tensors; pass LoadFailures through under ``"failures"``.

    Returns a dict with frames [B, T, 3, H, W] float32, frame_box [B, 4] int64, masks [B, T, M, M] uint8,
    mask_valid [B, T] bool, is_null [B] bool, audio [B, N_max] float32 zero-padded with
    audio_lengths [B] int64, fbank [B, F_max, bins] float32 zero-padded with fbank_lengths [B],
    the other fields as lists (uid, row, vid, fid, split, expression), facts as a list, and
    ``failures``: the LoadFailure records of items that could not be read (see load_failures.py).
    A batch whose items all failed has B = 0 and no tensors, only ``failures``.
    """
    import torch

    from aurora_rl.data.load_failures import LoadFailure

    failures = [x for x in items if isinstance(x, LoadFailure)]
    samples: list[ClipSample] = [x for x in items if not isinstance(x, LoadFailure)]
    batch: dict[str, Any] = {"failures": failures, "size": len(samples)}
    if not samples:
        return batch
    batch["frames"] = torch.from_numpy(np.stack([s.frames for s in samples]))
    size = samples[0].frames.shape[-2:]
    batch["frame_box"] = torch.tensor([s.frame_box or (0, 0, *size) for s in samples], dtype=torch.int64)
    batch["masks"] = torch.from_numpy(np.stack([s.masks for s in samples]))
    batch["mask_valid"] = torch.from_numpy(np.stack([s.mask_valid for s in samples]))
    batch["is_null"] = torch.tensor([s.is_null for s in samples], dtype=torch.bool)
    batch["audio"], batch["audio_lengths"] = _pad([s.audio for s in samples])
    batch["fbank"], batch["fbank_lengths"] = _pad([s.fbank for s in samples])
    for key in ("uid", "row", "vid", "fid", "split", "expression", "facts"):
        batch[key] = [getattr(s, key) for s in samples]
    return batch


def batch_to(batch: dict[str, Any], device) -> dict[str, Any]:
    """The batch with its tensors on ``device`` (lists and failures as they are)."""
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _pad(arrays: list[np.ndarray]):
    """Zero-pad along the first axis to the longest; returns (tensor [B, L, ...], lengths [B])."""
    import torch

    lengths = [a.shape[0] for a in arrays]
    out = np.zeros((len(arrays), max(lengths), *arrays[0].shape[1:]), dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return torch.from_numpy(out), torch.tensor(lengths, dtype=torch.int64)
