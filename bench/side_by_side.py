"""Measuring a baseline and ours side by side, and the table every benchmark prints.

The machine may be shared, so absolute timings drift: each benchmark runs baseline and ours
in the same process tree, interleaved repetition by repetition (``interleaved``), and reports
the best repetition of each, so that a burst of outside load hits both alike. ``Table`` renders
``case | metric | baseline | ours | ours / baseline`` as markdown, with the machine it ran on.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


def machine() -> str:
    """One line: cores, CPU model, RAM, load average (what BENCHMARKS.md records per table)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        ram = f"{mem_kb / 2**20:.1f} GiB RAM"
    except (OSError, StopIteration):
        ram = "RAM unknown"
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, {cpu}, {ram}, load average {load} (1 / 5 / 15 min)"


def interleaved(runs: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each run per repetition, the runs taking turns (after ``warmup`` untimed turns)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for rep in range(warmup + reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


@dataclass
class Row:
    case: str
    metric: str  # a rate: higher is better, so ours / baseline > 1 means ours is faster
    baseline: float
    ours: float

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("inf")


@dataclass
class Table:
    title: str
    baseline: str = ""  # what the baseline column is, when one thing is for every row
    ours: str = ""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)  # more markdown after the notes (e.g. a phase table)

    def add(self, case: str, metric: str, baseline: float, ours: float) -> Row:
        row = Row(case, metric, baseline, ours)
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        base = f"baseline: {self.baseline}" if self.baseline else "baseline"
        ours = f"ours: {self.ours}" if self.ours else "ours"
        lines = [f"### {self.title}", "", f"Machine: {machine()}", "",
                 f"| case | metric | {base} | {ours} | ours / baseline |",
                 "|---|---|---:|---:|---:|"]
        for r in self.rows:
            lines.append(f"| {r.case} | {r.metric} | {_num(r.baseline)} | {_num(r.ours)} | {r.ratio:.2f}x |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {n}" for n in self.notes)
        for section in self.sections:
            lines.extend(["", section.strip("\n")])
        return "\n".join(lines) + "\n"

    def emit(self, out: Path | None = None) -> str:
        """Print the table; also write it to ``out`` when given."""
        text = self.markdown()
        print("\n" + text, flush=True)
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text)
        return text


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"
