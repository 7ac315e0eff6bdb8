"""Stage-1/2 loss: CE on the answer + mask BCE/Dice + [SEG] feature distillation.

    total = ce * CE + bce * BCE + dice * Dice + distill * MSE(student [SEG] emb, teacher [SEG] emb)

CE is the mean over answer tokens of the batch (token-level, as LISA). The [SEG] embedding is
the projector output (the SAM prompt); distillation is averaged over samples where both the
student and the teacher emitted [SEG].
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from aurora_rl.config.schema import SFTLossConfig
from aurora_rl.model.mask_loss import mask_loss
from aurora_rl.model.policy import PolicyOutput


def answer_ce(out: PolicyOutput) -> torch.Tensor:
    """Mean CE over the batch's answer tokens (token-level)."""
    return -(out.answer_logprobs * out.answer_mask).sum() / out.answer_mask.sum().clamp(min=1)


def sft_loss(out: PolicyOutput, gt_masks: torch.Tensor, mask_valid: torch.Tensor, weights: SFTLossConfig,
             teacher_seg: Optional[torch.Tensor] = None, teacher_has_seg: Optional[torch.Tensor] = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """
    Args:
        out: the student's PolicyOutput (answer_logprobs [B, A], mask_logits [B, T, M, M], ...).
        gt_masks: [B, T, M, M] in {0, 1}. mask_valid: [B, T] bool.
        teacher_seg: [B, D] the frozen teacher's [SEG] embeddings (None: no distillation).
    Returns:
        (total loss, {"ce", "bce", "dice", "distill", "total"} as floats).
    """
    ce = answer_ce(out)
    masked, bce, dice = mask_loss(out.mask_logits, gt_masks, mask_valid, weights.bce, weights.dice)
    distill = ce.new_zeros(())
    if teacher_seg is not None and weights.distill > 0:
        both = out.has_seg & (teacher_has_seg if teacher_has_seg is not None else out.has_seg)
        if both.any():
            distill = F.mse_loss(out.seg_embedding[both], teacher_seg[both].to(out.seg_embedding.dtype))
    total = weights.ce * ce + masked + weights.distill * distill
    parts = {"ce": ce, "bce": bce, "dice": dice, "distill": distill, "total": total}
    return total, {k: float(v.detach()) for k, v in parts.items()}
