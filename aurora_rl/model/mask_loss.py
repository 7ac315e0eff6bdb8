"""The segmentation loss of LISA / AURORA: BCE x2 + Dice x0.5 on mask logits."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F


def mask_loss(mask_logits: torch.Tensor, gt: torch.Tensor, valid: Optional[torch.Tensor] = None,
              bce_weight: float = 2.0, dice_weight: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LISA/AURORA mask loss: bce_weight * BCE + dice_weight * Dice, over valid frames.

    Args:
        mask_logits: [B, T, M, M]. gt: [B, T, M, M] in {0, 1}. valid: [B, T] bool (None: all).
    Returns:
        (total, bce, dice) scalars. BCE is the per-pixel mean over valid frames; Dice is
        1 - (2|P∩G| + 1) / (|P| + |G| + 1) per frame (soft, sigmoid probabilities), averaged over
        valid frames — the +1 smoothing makes an empty prediction on an empty frame score 0 loss.
    """
    gt = gt.float()
    if valid is None:
        valid = torch.ones(mask_logits.shape[:2], dtype=torch.bool, device=mask_logits.device)
    logits, target = mask_logits[valid], gt[valid]  # [N, M, M]
    if logits.numel() == 0:
        zero = mask_logits.sum() * 0
        return zero, zero, zero
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    dice = 1 - (2 * (prob * target).sum(-1) + 1) / (prob.sum(-1) + target.sum(-1) + 1)
    dice = dice.mean()
    return bce_weight * bce + dice_weight * dice, bce, dice


def pick_mask_frames(gt: torch.Tensor, valid: torch.Tensor, k: Optional[int], rng: np.random.Generator
                     ) -> tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Choose k random frames per clip whose masks are predicted and supervised.

    One [SEG] prompts every frame, so the loss on k random frames is an unbiased, k/T cheaper
    estimate of the loss on all of them (the mask decoder dominates a CPU training step).

    Args:
        gt: [B, T, M, M] ground truth. valid: [B, T] bool. k: frames per clip (None or >= T: all).
    Returns:
        (frames [B, k] int64 sorted, or None for all; gt [B, k, M, M]; valid [B, k]).
    """
    b, t = valid.shape
    if k is None or k >= t:
        return None, gt, valid
    frames = torch.from_numpy(np.stack([np.sort(rng.choice(t, k, replace=False)) for _ in range(b)]))
    gt = torch.gather(gt, 1, frames[:, :, None, None].expand(-1, -1, *gt.shape[2:]))
    return frames, gt, torch.gather(valid, 1, frames)
