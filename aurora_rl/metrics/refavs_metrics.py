"""Ref-AVS Bench metrics J, F and S, exactly as the official evaluation computes them.

Reference: GeWu-Lab/Ref-AVS, ``utils/metric/utility.py`` (``mask_iou``, ``Eval_Fmeasure``,
``metric_s_for_null``) and ``scripts/train.py`` (how they are averaged).

- J (``jaccard_per_frame``): foreground = sigmoid(pred) > 0.4. Per frame IoU = |P & G| / |P | G|;
  a frame whose ground truth is empty scores |~P & ~G| / (H * W) instead (the share of pixels
  both leave empty). IoU = inter / (union + 1e-7).
- F (``f_score``): probabilities = sigmoid(pred); 255 thresholds linspace(0, 1 - 1e-10) (the
  last one rounds to 1.0 in float32), foreground = prob >= threshold. Per frame and threshold
  precision = TP / (|P| + 1e-20), recall = TP / (|G| + 1e-20), F = 1.3 P R / (0.3 P + R), NaN -> 0.
  The F curves of frames with a non-empty ground truth are averaged, and the maximum over
  thresholds is the score. When every frame's ground truth is empty the score is 0.0.
- S (``s_score``, null split): sqrt(#(sigmoid(pred) > 0.5) / #pixels) over all frames given;
  lower is better.

The official script computes each metric over a *batch of 4 clips* (frames of the batch pooled)
and averages the batch values; ``SplitMetrics`` reproduces this with ``clips_per_group``. The
AURORA code evaluates one clip at a time, thresholds J at sigmoid > 0.5 and feeds F the raw
logits without a sigmoid. Both are available as conventions (``OFFICIAL``, ``AURORA``); every
function also takes the threshold and ``apply_sigmoid`` explicitly.

Inputs are numpy arrays or torch tensors: predictions [N, H, W] (logits, or probabilities with
apply_sigmoid=False), ground truth [N, H, W] in {0, 1}. N is frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

NULL_SPLIT = "test_n"
MIX_SPLITS = ("test_s", "test_u")


def _as_numpy(x, dtype) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=dtype)


def _probabilities(pred, apply_sigmoid: bool) -> np.ndarray:
    """float32 scores; sigmoid in float32 like torch.sigmoid on a float32 tensor."""
    p = _as_numpy(pred, np.float32)
    if apply_sigmoid:
        with np.errstate(over="ignore"):
            p = (1.0 / (1.0 + np.exp(-p))).astype(np.float32)
    return p


def _check(pred: np.ndarray, gt: Optional[np.ndarray] = None) -> None:
    if pred.ndim != 3:
        raise ValueError(f"predictions must be [N, H, W], got shape {pred.shape}")
    if gt is not None and gt.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")


def jaccard_per_frame(pred, gt, threshold: float = 0.4, apply_sigmoid: bool = True, eps: float = 1e-7) -> np.ndarray:
    """Per-frame IoU (official ``mask_iou`` before averaging).

    Args:
        pred: [N, H, W] logits (apply_sigmoid=True) or probabilities.
        gt: [N, H, W] binary ground truth.
        threshold: foreground where score > threshold (strict).
    Returns:
        float64 [N]; frames with an empty ground truth score both-empty pixels / all pixels.
    """
    p = _probabilities(pred, apply_sigmoid) > threshold
    g = _as_numpy(gt, np.float32) > 0
    _check(p, g)
    inter = (p & g).sum(axis=(1, 2)).astype(np.float64)
    union = (p | g).sum(axis=(1, 2)).astype(np.float64)
    empty = ~g.any(axis=(1, 2))
    inter[empty] = (~p[empty] & ~g[empty]).sum(axis=(1, 2))
    union[empty] = p.shape[1] * p.shape[2]
    return inter / (union + eps)


def jaccard(pred, gt, threshold: float = 0.4, apply_sigmoid: bool = True) -> float:
    """Mean over frames of ``jaccard_per_frame`` (official ``mask_iou`` of one group of frames)."""
    return float(jaccard_per_frame(pred, gt, threshold, apply_sigmoid).mean())


def f_thresholds(num: int = 255) -> np.ndarray:
    """The official thresholds: torch.linspace(0, 1 - 1e-10, num) in float32 (the last is 1.0)."""
    return np.linspace(0.0, 1.0 - 1e-10, num).astype(np.float32)


def f_curve_per_frame(pred, gt, beta2: float = 0.3, num_thresholds: int = 255, apply_sigmoid: bool = True) -> np.ndarray:
    """F-beta of every frame at every threshold.

    Returns:
        float64 [N, num_thresholds]; rows of frames with an empty ground truth are NaN.
    """
    p = _probabilities(pred, apply_sigmoid)
    g = _as_numpy(gt, np.float32) > 0
    _check(p, g)
    th = f_thresholds(num_thresholds)
    out = np.full((p.shape[0], num_thresholds), np.nan)
    for i in range(p.shape[0]):
        if not g[i].any():
            continue
        scores = np.sort(p[i].ravel())
        fg_scores = np.sort(p[i][g[i]])
        # count of scores >= t, for every threshold t, by binary search instead of 255 passes
        predicted = scores.size - np.searchsorted(scores, th, side="left")
        tp = fg_scores.size - np.searchsorted(fg_scores, th, side="left")
        prec = tp / (predicted + 1e-20)
        rec = tp / (fg_scores.size + 1e-20)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = (1 + beta2) * prec * rec / (beta2 * prec + rec)
        out[i] = np.nan_to_num(f, nan=0.0)
    return out


def f_score(pred, gt, beta2: float = 0.3, num_thresholds: int = 255, apply_sigmoid: bool = True) -> float:
    """Official ``Eval_Fmeasure`` of one group of frames: max over thresholds of the mean F curve
    of non-empty-ground-truth frames; 0.0 when all ground truths are empty."""
    curves = f_curve_per_frame(pred, gt, beta2, num_thresholds, apply_sigmoid)
    kept = curves[~np.isnan(curves[:, 0])]
    if kept.shape[0] == 0:
        return 0.0
    return float(kept.mean(axis=0).max())


def s_score(pred, threshold: float = 0.5, apply_sigmoid: bool = True) -> float:
    """Null-split score: sqrt(foreground pixels / all pixels) over all frames of ``pred`` [N, H, W]."""
    p = _probabilities(pred, apply_sigmoid)
    _check(p)
    return float(np.sqrt((p > threshold).sum() / p.size))


@dataclass(frozen=True)
class MetricConvention:
    """How predictions are scored: thresholds, where a sigmoid is applied, clips per group."""

    name: str
    j_threshold: float = 0.4
    j_apply_sigmoid: bool = True
    f_apply_sigmoid: bool = True
    s_threshold: float = 0.5
    s_apply_sigmoid: bool = True
    clips_per_group: int = 1  # the official test loader: batches of 4 clips

    @classmethod
    def from_config(cls, cfg) -> "MetricConvention":
        """The convention a ``MetricsConfig`` names: ``OFFICIAL`` or ``AURORA``."""
        return {"official": OFFICIAL, "aurora": AURORA}[cfg.convention]


OFFICIAL = MetricConvention("official", 0.4, True, True, 0.5, True, clips_per_group=4)
AURORA = MetricConvention("aurora", 0.5, True, False, 0.5, True, clips_per_group=1)


@dataclass
class SplitMetrics:
    """Accumulates clips of one split; ``result()`` gives J and F (S for the null split).

    Clips are scored in groups of ``convention.clips_per_group`` consecutive clips (frames
    pooled), and the group scores are averaged, as the official evaluation does. With 1 clip per
    group every clip weighs the same.
    """

    split: str
    convention: MetricConvention = OFFICIAL
    is_null: Optional[bool] = None  # default: split == "test_n"
    clips: int = 0
    _pending: list = field(default_factory=list, repr=False)
    _scores: dict = field(default_factory=lambda: {"J": [], "F": [], "S": []}, repr=False)

    def __post_init__(self):
        if self.is_null is None:
            self.is_null = self.split == NULL_SPLIT

    def add(self, pred, gt) -> None:
        """One clip: pred [T, H, W] logits/probabilities, gt [T, H, W] binary."""
        p, g = _as_numpy(pred, np.float32), _as_numpy(gt, np.float32)
        _check(p, g)
        self._pending.append((p, g))
        self.clips += 1
        if len(self._pending) == self.convention.clips_per_group:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        p = np.concatenate([x for x, _ in self._pending])
        g = np.concatenate([y for _, y in self._pending])
        self._pending = []
        c = self.convention
        if self.is_null:
            self._scores["S"].append(s_score(p, c.s_threshold, c.s_apply_sigmoid))
        else:
            self._scores["J"].append(jaccard(p, g, c.j_threshold, c.j_apply_sigmoid))
            self._scores["F"].append(f_score(p, g, apply_sigmoid=c.f_apply_sigmoid))

    def result(self) -> dict[str, float]:
        """{"J", "F"} (or {"S"} for the null split) averaged over groups, plus "clips"."""
        self._flush()
        keys = ("S",) if self.is_null else ("J", "F")
        out = {k: float(np.mean(self._scores[k])) if self._scores[k] else float("nan") for k in keys}
        out["clips"] = self.clips
        return out


def mix_score(results: dict[str, dict[str, float]], splits=MIX_SPLITS) -> dict[str, float]:
    """Mix = mean over the seen and unseen splits of J and of F (NaN when one is missing)."""
    out = {}
    for k in ("J", "F"):
        vals = [results[s][k] for s in splits if s in results and k in results[s]]
        out[k] = float(np.mean(vals)) if len(vals) == len(splits) else float("nan")
    return out


class RefAVSEvaluator:
    """Per-split accumulators and the summary the Ref-AVS papers report."""

    def __init__(self, convention: MetricConvention = OFFICIAL):
        self.convention = convention
        self.splits: dict[str, SplitMetrics] = {}

    def add(self, split: str, pred, gt) -> None:
        if split not in self.splits:
            self.splits[split] = SplitMetrics(split, self.convention)
        self.splits[split].add(pred, gt)

    def summary(self) -> dict[str, dict[str, float]]:
        """{split: {"J", "F", "clips"} or {"S", "clips"}, ..., "mix": {"J", "F"}}."""
        results = {name: m.result() for name, m in self.splits.items()}
        results["mix"] = mix_score(results)
        return results
