"""Collecting one GRPO step's scored records from the scored stream, exactly once.

The driver reads the scored stream through its own consumer group. A record is accepted when
it belongs to one of the step's groups, is not older than the lag bound, and its record id
has not been accepted before; everything else is dropped and counted by reason. Messages are
acknowledged only after the learner step that used them (``ack_step``), so a driver that dies
mid-step leaves them pending for its successor.
"""

from __future__ import annotations

import time

from aurora_rl.config.schema import QueueConfig
from aurora_rl.record_stream import RecordStream
from aurora_rl.records import RolloutRecord


class StepCollector:
    def __init__(self, client, queue: QueueConfig, max_lag: int, consumer: str = "driver"):
        self.stream = RecordStream(client, queue.scored_stream, "learner", queue.max_record_bytes)
        self.stream.ensure_group()
        self.rollout = RecordStream(client, queue.rollout_stream, "scorers", queue.max_record_bytes)
        self.rollout.ensure_group()
        self.max_lag = max_lag
        self.consumer = consumer
        self.accepted: set[str] = set()
        self.pending_acks: list[bytes] = []
        self.counters = {"stale_dropped": 0, "duplicates_dropped": 0, "foreign_dropped": 0, "incomplete_groups": 0}

    def collect(self, group_ids: list[str], group_size: int, version: int, timeout_s: float) -> list[list[RolloutRecord]]:
        """The complete groups among ``group_ids`` (in that order), each sorted by sample index."""
        wanted = set(group_ids)
        groups: dict[str, dict[int, RolloutRecord]] = {gid: {} for gid in group_ids}
        deadline = time.monotonic() + timeout_s
        need = len(group_ids) * group_size
        got = 0
        while got < need and time.monotonic() < deadline:
            for delivery in self.stream.read(self.consumer, count=256, block_ms=200):
                self.pending_acks.append(delivery.message_id)
                r = delivery.record
                if r.group_id not in wanted:
                    self.counters["foreign_dropped"] += 1
                elif r.record_id in self.accepted or r.sample_index in groups[r.group_id]:
                    self.counters["duplicates_dropped"] += 1
                elif version - r.policy_version > self.max_lag:
                    self.counters["stale_dropped"] += 1
                else:
                    groups[r.group_id][r.sample_index] = r
                    got += 1
        complete = []
        for gid in group_ids:
            if len(groups[gid]) == group_size:
                complete.append([groups[gid][k] for k in range(group_size)])
                self.accepted.update(r.record_id for r in complete[-1])
            else:
                self.counters["incomplete_groups"] += 1
        if not complete:
            raise RuntimeError(
                f"no complete group arrived within {timeout_s:.0f} s ({got}/{need} records; "
                f"rollout stream depth {self.rollout_depth()}): are the reward workers running?")
        return complete

    def ack_step(self) -> None:
        self.stream.ack(self.pending_acks)
        self.pending_acks = []

    def rollout_depth(self) -> int:
        return self.rollout.depth()

    def scored_depth(self) -> int:
        return self.stream.depth()
