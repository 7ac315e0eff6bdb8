"""How far a change measured on test clips could move on another draw of clips of the same size.

Two checkpoints scored on the same clips give one difference per clip. Resampling the clips
with replacement (the same clips for both checkpoints: a *paired* bootstrap) and taking the
mean difference each time shows how much of a measured change is the draw of clips. With a few
hundred clips per split that spread is a few points of J, larger than most changes a training
stage of the tiny model makes.

A change over several splits (Mix = the mean of test_s and test_u) resamples each split's clips
separately: the splits are drawn separately, so they are the strata of the bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class ClipSpread:
    """change: the mean over strata of the mean per-clip difference, on the clips as drawn.
    low, high: its central ``level`` interval over resampled draws. clips: clips in all strata."""

    change: float
    low: float
    high: float
    clips: int
    level: float


def paired_differences(before: Mapping[str, float], after: Sequence[Mapping[str, float]]) -> np.ndarray:
    """Per-clip differences [N], sorted by uid: the mean of ``after`` (one or more checkpoints,
    e.g. seeds, each uid -> score) minus ``before``, over the N uids that all of them scored."""
    uids = sorted(set(before).intersection(*after))
    return np.array([np.mean([a[u] for a in after]) - before[u] for u in uids], dtype=np.float64)


def bootstrap_mean_change(strata: Sequence[np.ndarray], rounds: int = 4000, level: float = 0.95,
                          seed: int = 0) -> ClipSpread:
    """The mean over ``strata`` (each [N_i] per-clip differences, N_i > 0) of their means, and its
    percentile interval from ``rounds`` resamplings of every stratum's clips with replacement."""
    if not strata or any(len(s) == 0 for s in strata):
        raise ValueError("every stratum needs at least one clip")
    rng = np.random.default_rng(seed)
    means = np.zeros(rounds)
    for diffs in strata:
        diffs = np.asarray(diffs, dtype=np.float64)
        means += diffs[rng.integers(0, len(diffs), (rounds, len(diffs)))].mean(1)
    means /= len(strata)
    tail = (1 - level) / 2 * 100
    change = float(np.mean([np.mean(s) for s in strata]))
    return ClipSpread(change, float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)),
                      sum(len(s) for s in strata), level)
