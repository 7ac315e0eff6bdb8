"""GRPO rewards of one completion (AURORA definitions): format, IoU and class, and their total.

Pure functions of text and arrays; no Ray, no I/O. Masks are [T, H, W] (T frames); the rollout
masks arrive binary (decoded from the record's RLE), ground truth is {0, 1}.

- format = 1 if the answer ends with "it is [SEG] ." (any case / spacing), else 0.
- class  = 1 if "the target is X ." is present, plus 1 if X is the true class (the true class of
  a null row is ``NULL_CLASS``, "nothing"); so 0, 1 or 2.
- IoU    = mean over frames of the mask IoU at ``mask_threshold``. A frame whose ground truth is
  empty scores the IoU of the backgrounds (|~P & ~G| / |~P | ~G| = |~P| / (H*W)), as AURORA and
  the official J do, so an empty prediction is rewarded on empty frames. A completion without
  [SEG] has an empty predicted mask. Variant "thresholded": 1 if that mean >= iou_threshold.
- total  = format * cfg.format + iou * cfg.iou + class * cfg.cls.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from aurora_rl.config.schema import RewardConfig
from aurora_rl.prompts.answer_format import NULL_CLASS, ParsedAnswer, normalize, parse_answer
from aurora_rl.records import RolloutRecord

REWARD_KINDS = ("format", "iou", "cls")


def format_reward(parsed: ParsedAnswer) -> float:
    """1.0 if the completion ends with "it is [SEG] .", else 0.0."""
    return 1.0 if parsed.ends_with_seg else 0.0


def class_reward(parsed: ParsedAnswer, true_class: Optional[str]) -> float:
    """0, 1 or 2: one for naming a target at all, one more for naming the true one.

    Args:
        parsed: the parsed completion (its ``target_class`` is already normalised).
        true_class: the referent's class; None for a null row (then the answer must be "nothing").
    """
    if parsed.target_class is None:
        return 0.0
    truth = normalize(true_class) if true_class is not None else NULL_CLASS
    return 2.0 if parsed.target_class == truth else 1.0


def frame_ious(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-frame IoU; empty-GT frames score the IoU of the two backgrounds.

    Args:
        pred: [T, H, W] predicted masks (bool, or scores: foreground where pred > threshold).
        gt: [T, H, W] ground truth, foreground where gt > 0.
        threshold: strict foreground threshold of ``pred``.
    Returns:
        float64 [T] in [0, 1]. No epsilon is needed: a non-empty GT makes the union >= 1 and an
        empty GT makes the background union the whole frame.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.ndim != 3 or pred.shape != gt.shape or pred.shape[0] == 0:
        raise ValueError(f"predicted masks {pred.shape} and ground truth {gt.shape} must both be [T, H, W], T > 0")
    frames = pred.shape[0]
    # Rollout masks are already bool: comparing them to a float threshold would cost a cast.
    fg = pred if pred.dtype == bool and threshold < 1.0 else pred > threshold
    p = fg.reshape(frames, -1)
    g = (gt > 0).reshape(frames, -1)
    # count_nonzero of a flat bool row counts without the int conversion that sum() makes.
    n_p = np.array([np.count_nonzero(row) for row in p], dtype=np.float64)
    n_g = np.array([np.count_nonzero(row) for row in g], dtype=np.float64)
    inter = np.array([np.count_nonzero(a & b) for a, b in zip(p, g)], dtype=np.float64)
    union = n_p + n_g - inter
    empty = n_g == 0
    inter[empty] = p.shape[1] - n_p[empty]  # pixels both leave as background
    union[empty] = p.shape[1]
    return inter / union


def iou_reward(
    pred: Optional[np.ndarray], gt: np.ndarray, threshold: float = 0.5, variant: str = "mean", iou_threshold: float = 0.5
) -> float:
    """Mean frame IoU (variant "mean") or 1.0 / 0.0 for mean >= / < iou_threshold ("thresholded").

    Args:
        pred: [T, H, W] predicted masks, or None when the completion emitted no [SEG] (scored as
            an empty mask).
        gt: [T, H, W] ground truth.
    """
    if pred is None:
        pred = np.zeros(np.shape(gt), dtype=bool)
    mean = float(frame_ious(pred, gt, threshold).mean())
    if variant == "mean":
        return mean
    if variant == "thresholded":
        return 1.0 if mean >= iou_threshold else 0.0
    raise ValueError(f"unknown iou_variant {variant!r} (expected 'mean' or 'thresholded')")


def score_completion(
    text: str, pred: Optional[np.ndarray], gt_masks: np.ndarray, gt_class: Optional[str], cfg: RewardConfig
) -> dict[str, float]:
    """All rewards of one completion -> {"format", "iou", "cls", "total"}.

    Args:
        text: the completion text.
        pred: [T, H, W] predicted masks or None; ignored (scored empty) when the text has no [SEG],
            because then no [SEG] hidden state could have prompted SAM.
        gt_masks: [T, H, W] ground truth in {0, 1}.
        gt_class: the true class; None for a null row.
    """
    parsed = parse_answer(text)
    if parsed.seg_count == 0:
        pred = None
    scores = {
        "format": format_reward(parsed),
        "iou": iou_reward(pred, gt_masks, cfg.mask_threshold, cfg.iou_variant, cfg.iou_threshold),
        "cls": class_reward(parsed, gt_class),
    }
    scores["total"] = scores["format"] * cfg.format + scores["iou"] * cfg.iou + scores["cls"] * cfg.cls
    return scores


def score_record(
    record: RolloutRecord, gt_masks: np.ndarray, gt_class: Optional[str], cfg: RewardConfig
) -> dict[str, float]:
    """``score_completion`` of a rollout record (decodes its RLE masks, [T, H, W] bool)."""
    return score_completion(record.completion_text, record.masks(), gt_masks, gt_class, cfg)
