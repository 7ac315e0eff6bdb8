"""Training never drops a sample silently: an unreadable clip becomes a counted, reported record.

Readers raise ``DataError`` naming the file. A training run that prefers to go on wraps its
dataset in ``TolerantDataset``: a failing item comes back as a ``LoadFailure`` (index + the
error text), ``collate_clips`` moves it to ``batch["failures"]`` and the loop feeds every batch
to a ``FailureLog``, which counts, reports, and stops the run once failures pass a budget.
Failures travel inside batches, so the count is right with any number of DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from aurora_rl.data.errors import DataError


@dataclass(frozen=True)
class LoadFailure:
    """Item ``index`` of a dataset could not be read; ``message`` names the file and the reason."""

    index: int
    message: str


class TolerantDataset:
    """Wraps a map-style dataset: ``DataError`` from ``dataset[i]`` becomes ``LoadFailure(i, msg)``.

    Only DataError is caught: any other exception is a bug and propagates.
    """

    def __init__(self, dataset: Sequence):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except DataError as e:
            return LoadFailure(int(index), str(e))


class TooManyFailures(RuntimeError):
    """More samples failed to load than the run's budget allows."""


@dataclass
class FailureLog:
    """Counts loaded and failed samples over a run; raises once failures exceed ``max_fraction``.

    ``max_fraction`` is checked after ``min_seen`` samples so that one early failure does not
    stop a run; 0.0 makes any failure fatal.
    """

    max_fraction: float = 0.01
    min_seen: int = 100
    loaded: int = 0
    failures: list[LoadFailure] = field(default_factory=list)

    def update(self, batch: dict) -> None:
        self.loaded += int(batch["size"])
        self.failures.extend(batch["failures"])
        seen = self.loaded + len(self.failures)
        if self.failures and (self.max_fraction == 0.0 or seen >= self.min_seen):
            if len(self.failures) / seen > self.max_fraction:
                raise TooManyFailures(self.report())

    def report(self) -> str:
        """One line with the counts, then one line per failed sample."""
        seen = self.loaded + len(self.failures)
        lines = [f"{len(self.failures)} of {seen} samples could not be loaded"]
        lines += [f"  item {f.index}: {f.message}" for f in self.failures]
        return "\n".join(lines)
