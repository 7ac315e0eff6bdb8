"""Evaluation metrics (pure functions of arrays/tensors; no I/O)."""

from aurora_rl.metrics.refavs_metrics import (
    AURORA,
    OFFICIAL,
    MetricConvention,
    RefAVSEvaluator,
    SplitMetrics,
    f_curve_per_frame,
    f_score,
    f_thresholds,
    jaccard,
    jaccard_per_frame,
    mix_score,
    s_score,
)

__all__ = [
    "AURORA", "OFFICIAL", "MetricConvention", "RefAVSEvaluator", "SplitMetrics",
    "f_curve_per_frame", "f_score", "f_thresholds", "jaccard", "jaccard_per_frame", "mix_score", "s_score",
]
