"""Reading training metrics.jsonl files into per-key step series."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

# Wall-clock stamps, not something to plot against steps.
NOT_PLOTTED = {"step", "time"}


def read_metrics(paths: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{key: (steps [K], values [K])} over all files, in step order.

    A resumed run appends the steps it repeats, so the last row seen for a step wins (files
    are read in the order given). Non-numeric values and NaNs are left out of the series.
    """
    by_step: dict[int, dict] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed run; the rows around it still count
            if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
                by_step[int(row["step"])] = row
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
