"""The reward worker: a Ray actor that runs a ``StreamScorer`` over the rollout stream.

M of them share consumer group "scorers", so each rollout message goes to one of them, and
a dead worker's pending messages are reclaimed by the others (see stream_scorer.py for the
exactly-once commit). The actor is threaded (``max_concurrency``) so that ``stats`` and
``stop`` answer while ``run`` loops. A driver stops a pool with ``stop.remote()`` on each actor
or, for all of them at once, ``stream_scorer.request_stop(client, rollout_stream)``.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import ray

from aurora_rl.config.schema import DataConfig, QueueConfig, RewardConfig
from aurora_rl.records import RecordLimits
from aurora_rl.services.library_logs import capture_output


@ray.remote(num_cpus=1, max_concurrency=4)
class RewardWorker:
    """Args:
        redis_url: where the streams are.
        queue: the streams (rollout_stream, scored_stream, ...).
        reward: the weights, iou_variant, ...
        data: the Ref-AVS folder holding the ground truth (root), its mask_size (must match the
            rollout masks) and num_frames.
        consumer_name: unique per worker in the group.
        batch, block_ms, dedupe_ttl_s, limits: see StreamScorer.
        log_file: where the worker's output goes (None: Ray's worker log).
    """

    def __init__(self, redis_url: str, queue: QueueConfig, reward: RewardConfig, data: DataConfig, consumer_name: str,
                 *, batch: int = 32, block_ms: int = 500, dedupe_ttl_s: float = 3600.0,
                 limits: Optional[RecordLimits] = None, log_file: Optional[str] = None):
        capture_output(log_file)  # its log lines (Redis outages, reclaims): to the run folder, not the console
        from rewards.ground_truth import GroundTruth
        from rewards.stream_scorer import StreamScorer, scorer_client

        client = scorer_client(redis_url, block_ms, name=f"reward-worker:{consumer_name}")
        truth = GroundTruth(data.root, None, data.mask_size, num_frames=data.num_frames)
        self.scorer = StreamScorer(client, queue, reward, truth, consumer_name, batch=batch, dedupe_ttl_s=dedupe_ttl_s,
                                   limits=limits)
        self.block_ms = block_ms
        self._stop = threading.Event()
        self._started: Optional[float] = None
        self._metrics = _WorkerMetrics(consumer_name)

    def run(self, max_seconds: Optional[float] = None, stop_when_idle_s: Optional[float] = None) -> dict:
        """Score until ``stop()``, the stream's stop key, or a bound; returns ``stats()``.

        A stopped worker stays stopped (a stop that arrives before ``run`` starts is not lost).
        """
        self._started = time.monotonic()
        return self.scorer.run(self._stop.is_set, max_seconds, stop_when_idle_s, self.block_ms,
                               on_step=lambda: self._metrics.update(self.scorer))

    def stop(self) -> None:
        self._stop.set()

    def memory(self) -> dict:
        """The machine's memory and this worker's share (``aurora-rl preflight``)."""
        from aurora_rl.services.devices import memory_report

        return memory_report("cpu")

    def stats(self) -> dict:
        """scored, duplicates, rejected (malformed), unscorable, poisoned, reclaimed, records_per_s, ..."""
        return self.scorer.stats(time.monotonic() - self._started if self._started else 0.0)


class _WorkerMetrics:
    """Ray metrics (dashboard / Prometheus): records by outcome, mean reward by kind."""

    def __init__(self, worker: str):
        from ray.util.metrics import Counter, Gauge

        self.records = Counter("aurora_reward_records", "rollout records handled by reward workers",
                               tag_keys=("worker", "outcome"))
        self.mean = Gauge("aurora_reward_mean", "mean reward of scored records so far", tag_keys=("worker", "kind"))
        self.worker = worker
        self.seen: dict[str, int] = {}

    def update(self, scorer) -> None:
        counts = dict(scorer.counts, rejected=scorer.rejected, poisoned=scorer.poisoned)
        for outcome, total in counts.items():
            delta = total - self.seen.get(outcome, 0)
            if delta:
                self.records.inc(delta, tags={"worker": self.worker, "outcome": outcome})
        self.seen = counts
        if counts["scored"]:
            for kind, total in scorer.reward_sums.items():
                self.mean.set(total / counts["scored"], tags={"worker": self.worker, "kind": kind})
