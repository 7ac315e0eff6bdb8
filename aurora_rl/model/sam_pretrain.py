"""Promptable-segmentation pretraining of the tiny SAM: the stand-in for SAM's own pretraining.

AURORA freezes a pretrained SAM image encoder and fine-tunes the mask decoder behind the [SEG]
prompt. The tiny backbone's SAM is random, and a frozen random encoder is no stand-in for the
pretrained one the recipe assumes: its features were never trained to separate objects. This
module trains the tiny SAM the way SAM itself was trained: one
point prompt inside an object (sometimes with one outside it) -> that object's mask, BCE + Dice,
on the training split's object masks. The result is saved as a Hugging Face ``SamModel`` folder
that ``model.sam.path`` accepts, like a released SAM.

    aurora-rl sam pretrain --data DIR --out DIR [--steps 1000] [--batch 32]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aurora_rl.config.schema import TinyBackboneConfig
from aurora_rl.metrics.refavs_metrics import jaccard_per_frame
from aurora_rl.model.mask_loss import mask_loss
from aurora_rl.model.sam_checkpoint import build_tiny_sam
from aurora_rl.model.sam_segmenter import SamSegmenter

TINY = TinyBackboneConfig()  # the tiny backbone's SAM shape, so the pretrained one drops in


@dataclass
class ObjectFrames:
    """Frames and the masks of one object in each: frames uint8 [N, 3, H, W], masks bool [N, H, W]."""

    frames: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return self.masks.shape[0]


def load_object_frames(root: str | Path, split: str, image_size: int, max_clips: int | None = None) -> ObjectFrames:
    """Every (frame, object mask) pair of a split's non-null rows, each object of a video once.

    Rows of the same video that refer to the same object (same ``fid``) add nothing and are
    skipped; frames whose mask is empty (the object left the frame) are dropped.
    """
    from aurora_rl.data.refavs_dataset import RefAVSDataset

    ds = RefAVSDataset(root, split, image_size=image_size, mask_size=image_size)
    frames, masks, seen = [], [], set()
    for row in ds.rows:
        if (row.vid, row.fid) in seen or (max_clips is not None and len(seen) >= max_clips):
            continue
        clip = ds.load(row)
        if clip.is_null:
            continue
        seen.add((row.vid, row.fid))
        keep = clip.masks.reshape(clip.masks.shape[0], -1).any(axis=1)
        frames.append(np.round(clip.frames[keep] * 255).astype(np.uint8))
        masks.append(clip.masks[keep].astype(bool))
    if not frames:
        raise ValueError(f"{root}: split {split!r} has no object masks to pretrain SAM on")
    return ObjectFrames(torch.from_numpy(np.concatenate(frames)), torch.from_numpy(np.concatenate(masks)))


def sample_points(masks: torch.Tensor, generator: torch.Generator, negative_rate: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One positive point inside each mask, and with probability ``negative_rate`` one outside.

    Args:
        masks: bool [B, H, W], each with at least one pixel set.
    Returns:
        points float [B, 1, 2, 2] as (x, y) pixel centres and labels long [B, 1, 2]: 1 inside,
        0 outside, -1 for the padding point SAM ignores where no negative point was drawn.
    """
    b = masks.shape[0]
    points = torch.zeros(b, 1, 2, 2)
    labels = torch.full((b, 1, 2), -1, dtype=torch.long)
    for i in range(b):
        for slot, (pick, label) in enumerate(((masks[i], 1), (~masks[i], 0))):
            if label == 0 and torch.rand((), generator=generator).item() >= negative_rate:
                continue
            ys, xs = torch.nonzero(pick, as_tuple=True)
            k = torch.randint(len(ys), (), generator=generator).item()
            points[i, 0, slot] = torch.tensor([xs[k] + 0.5, ys[k] + 0.5])
            labels[i, 0, slot] = label
    return points, labels


def point_prompt_logits(segmenter: SamSegmenter, frames: torch.Tensor, points: torch.Tensor,
                        labels: torch.Tensor) -> torch.Tensor:
    """Mask logits of each frame's point prompt.

    Args:
        frames: float [B, 3, H, W] in [0, 1]. points: [B, 1, P, 2] pixel (x, y). labels: [B, 1, P].
    Returns:
        float32 [B, H, W] logits at the frame size.
    """
    scale = segmenter.input_size / max(frames.shape[-2:])  # pixels -> SAM's resized input frame
    out = segmenter.sam(pixel_values=segmenter.preprocess(frames), input_points=points * scale,
                        input_labels=labels, multimask_output=False)
    return segmenter.postprocess(out.pred_masks[:, 0, 0], tuple(frames.shape[-2:]))


@torch.no_grad()
def point_prompt_iou(segmenter: SamSegmenter, data: ObjectFrames, batch: int = 64, seed: int = 0) -> float:
    """Mean IoU (sigmoid > 0.5) of masks from one positive point per object frame."""
    segmenter.eval()
    g = torch.Generator().manual_seed(seed)
    ious = []
    for lo in range(0, len(data), batch):
        frames, masks = data.frames[lo:lo + batch].float() / 255, data.masks[lo:lo + batch]
        points, labels = sample_points(masks, g, negative_rate=0.0)
        logits = point_prompt_logits(segmenter, frames, points, labels)
        ious.append(jaccard_per_frame(logits, masks, threshold=0.5))
    return float(np.concatenate(ious).mean())


def pretrain_tiny_sam(root: str | Path, out: str | Path, *, image_size: int = 64,
                      patch_size: int = TINY.sam_patch, hidden_size: int = TINY.sam_hidden,
                      num_layers: int = TINY.sam_layers, steps: int = 1000, batch: int = 32,
                      lr: float = 1e-3, negative_rate: float = 0.5, seed: int = 0, log_every: int = 100,
                      max_clips: int | None = None) -> dict:
    """Train a tiny SAM on ``root``'s train split, save it to ``out`` (an HF SamModel folder).

    Returns the summary also written to ``out/pretraining.json``: steps, seconds, final loss and
    the val split's point-prompt IoU before and after.
    """
    torch.manual_seed(seed)
    train = load_object_frames(root, "train", image_size, max_clips)
    val = load_object_frames(root, "val", image_size, max_clips)
    sam = build_tiny_sam(image_size, seed=seed, patch_size=patch_size, hidden_size=hidden_size,
                         num_layers=num_layers)
    segmenter = SamSegmenter(sam, cache_size=0, freeze_image_encoder=False)
    sam.requires_grad_(True)
    before = point_prompt_iou(segmenter, val)
    print(f"[sam] {len(train)} object frames to train on, {len(val)} to validate; val IoU before {before:.3f}",
          flush=True)
    optimizer = torch.optim.AdamW(sam.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(seed)
    start = time.monotonic()
    segmenter.train()
    loss_value = float("nan")
    for step in range(1, steps + 1):
        idx = torch.randint(len(train), (batch,), generator=g)
        frames, masks = train.frames[idx].float() / 255, train.masks[idx]
        if torch.rand((), generator=g).item() < 0.5:  # objects look the same mirrored; positions do not matter here
            frames, masks = frames.flip(-1), masks.flip(-1)
        points, labels = sample_points(masks, g, negative_rate)
        logits = point_prompt_logits(segmenter, frames, points, labels)
        loss, bce, dice = mask_loss(logits[:, None], masks[:, None].float())  # AURORA's 2 x BCE + 0.5 x Dice
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        loss_value = loss.item()
        if step % log_every == 0 or step == steps:
            rate = step / (time.monotonic() - start)
            print(f"[sam] step {step}/{steps} loss {loss_value:.4f} bce {bce.item():.4f} dice {dice.item():.4f} | "
                  f"{rate:.1f} steps/s | ETA {(steps - step) / rate:.0f}s", flush=True)
    after = point_prompt_iou(segmenter, val)
    summary = {"steps": steps, "batch": batch, "lr": lr, "seconds": round(time.monotonic() - start, 1),
               "final_loss": loss_value, "train_object_frames": len(train), "val_object_frames": len(val),
               "val_point_iou_before": round(before, 4), "val_point_iou_after": round(after, 4)}
    print(f"[sam] val IoU from one point: {before:.3f} -> {after:.3f}", flush=True)
    out = Path(out)
    sam.eval().save_pretrained(out)
    (out / "pretraining.json").write_text(json.dumps(summary, indent=2))
    return summary
