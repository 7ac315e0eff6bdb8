"""Reading training metrics.jsonl files into per-key step series."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from learner.train_log import rows_by_step

# Wall-clock stamps, not something to plot against steps.
NOT_PLOTTED = {"step", "time"}


def read_metrics(paths: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{key: (steps [K], values [K])} over all files, in step order.

    A resumed run appends the steps it repeats, so the last row seen for a step wins (files
    are read in the order given). Non-numeric values and NaNs are left out of the series.
    """
    by_step = rows_by_step(paths)
    series: dict[str, tuple[list, list]] = {}
    for step in sorted(by_step):
        for key, value in by_step[step].items():
            if key in NOT_PLOTTED or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isnan(value):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(step)
            ys.append(float(value))
    return {k: (np.array(xs), np.array(ys)) for k, (xs, ys) in series.items()}
