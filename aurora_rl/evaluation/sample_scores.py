"""Per-sample scores and the failure kind of one prediction (for inspection, not the tables)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from aurora_rl.metrics.refavs_metrics import jaccard_per_frame
from aurora_rl.prompts.answer_format import NULL_CLASS, ParsedAnswer

POOR_MASK_J = 0.5


def sample_iou(mask_probs: np.ndarray, gt: np.ndarray, threshold: float = 0.4) -> float:
    """Mean per-frame J of one clip (probabilities, no sigmoid)."""
    return float(np.mean(jaccard_per_frame(mask_probs.astype(np.float32), gt, threshold, apply_sigmoid=False)))


def failure_kind(pred: dict, parsed: ParsedAnswer, j_threshold: float = 0.4, s_threshold: float = 0.5) -> Optional[str]:
    """One of: malformed answer, false positive on null, wrong class, right class but poor mask; None if fine."""
    if not parsed.well_formed:
        return "malformed answer"
    if pred["is_null"]:
        fg = (pred["mask_probs"].astype(np.float32) > s_threshold).mean()
        return "false positive on null" if fg > 0.01 else None
    if pred["gt_class"] is not None and parsed.target_class != pred["gt_class"]:
        return "wrong class" if parsed.target_class != NULL_CLASS else "said nothing on a real target"
    if sample_iou(pred["mask_probs"], pred["gt_masks"], j_threshold) < POOR_MASK_J:
        return "right class but poor mask"
    return None
