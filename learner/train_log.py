"""Per-step training metrics: a console progress line, TensorBoard, a JSONL file, Ray metrics.

Only rank 0 writes. The JSONL file (``metrics.jsonl``) is appended to, so a resumed run
continues the same curve; each line carries its global step.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def say(message: str) -> None:
    """One line to the console. Written to the stream directly: Ray Train patches ``print``
    inside workers and would show every line twice."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def rows_by_step(paths) -> dict[int, dict]:
    """The metrics rows of ``metrics.jsonl`` files by step; a resumed run re-logs the steps after
    its checkpoint, so the last row seen for a step wins (files are read in the order given).
    A line cut short by a killed run is skipped."""
    by_step: dict[int, dict] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
                by_step[int(row["step"])] = row
    return by_step


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class TrainLogger:
    def __init__(self, run_dir: str | Path, stage: str, total_steps: int, rank: int, start_step: int = 0):
        self.stage = stage
        self.total = total_steps
        self.rank = rank
        self.start_step = start_step
        self.started = time.monotonic()
        self.run_dir = Path(run_dir)
        self.writer = None
        self.gauges = {}
        if rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float], samples: int = 0) -> None:
        """Record metrics of global step ``step`` (1-based: the number of optimizer steps done)."""
        if self.rank != 0:
            return
        elapsed = time.monotonic() - self.started
        done = step - self.start_step
        rate = done / elapsed if elapsed > 0 else 0.0
        metrics = {**metrics, "samples_per_s": samples * rate}
        with (self.run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")
        for key, value in metrics.items():
            self.writer.add_scalar(f"{self.stage}/{key}", value, step)
            self._gauge(key).set(value)
        self.writer.flush()
        eta = (self.total - step) / rate if rate > 0 else 0.0
        shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "samples_per_s")
        say(f"[{self.stage}] step {step}/{self.total} ({100 * step // max(1, self.total)}%) {shown} "
            f"| {metrics['samples_per_s']:.2f} samples/s | ETA {format_eta(eta)}")

    def _gauge(self, key: str):
        if key not in self.gauges:
            from ray.util.metrics import Gauge

            self.gauges[key] = Gauge(f"aurora_{self.stage}_{key}", description=f"{self.stage} {key}")
        return self.gauges[key]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
