"""Per-step training metrics: a console progress line, TensorBoard, a JSONL file, Ray metrics.

Only rank 0 writes. The JSONL file (``metrics.jsonl``) is appended to, so a resumed run
continues the same curve; each line carries its global step, the run's total and its ETA.
Where rank 0 runs in a worker whose output goes to the run folder (Ray Train's SFT workers),
the driver prints the progress lines from that file (``MetricsTail``).
"""

from __future__ import annotations

import json
import sys
import threading
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


def progress_line(stage: str, row: dict) -> str:
    """The console line of one ``metrics.jsonl`` row: step of total, the metrics, rate and ETA."""
    total = row.get("total_steps", row["step"])
    shown = " ".join(f"{k} {v:.4g}" for k, v in row.items()
                     if k not in ("step", "time", "total_steps", "eta_s", "samples_per_s")
                     and isinstance(v, (int, float)))
    return (f"[{stage}] step {row['step']}/{total} ({100 * row['step'] // max(1, total)}%) {shown} "
            f"| {row.get('samples_per_s', 0.0):.2f} samples/s | ETA {format_eta(row.get('eta_s', 0.0))}")


class MetricsTail:
    """Prints ``progress_line`` for every row appended to ``path`` while the ``with`` block runs."""

    def __init__(self, path: str | Path, stage: str, poll_s: float = 0.5):
        self.path, self.stage, self.poll_s = Path(path), stage, poll_s
        self.offset = self.path.stat().st_size if self.path.exists() else 0  # a resumed run's old rows: shown before
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> "MetricsTail":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self._read()

    def _follow(self) -> None:
        while not self.stop.wait(self.poll_s):
            self._read()

    def _read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open() as f:
            f.seek(self.offset)
            while True:
                line = f.readline()
                if not line.endswith("\n"):  # none left, or one still being written: read it next time
                    break
                self.offset = f.tell()
                try:
                    say(progress_line(self.stage, json.loads(line)))
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue


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
        eta = (self.total - step) / rate if rate > 0 else 0.0
        row = {"step": step, "time": time.time(), **metrics, "total_steps": self.total, "eta_s": eta}
        with (self.run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        for key, value in metrics.items():
            self.writer.add_scalar(f"{self.stage}/{key}", value, step)
            self._gauge(key).set(value)
        self.writer.flush()
        say(progress_line(self.stage, row))

    def _gauge(self, key: str):
        if key not in self.gauges:
            from ray.util.metrics import Gauge

            self.gauges[key] = Gauge(f"aurora_{self.stage}_{key}", description=f"{self.stage} {key}")
        return self.gauges[key]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
