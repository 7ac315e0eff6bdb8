"""Collecting one GRPO step's scored records from the scored stream, exactly once.

The driver reads the scored stream through its own consumer group. A record is accepted when
it belongs to one of the step's groups, fits the step (its group size, a sample index inside
the group, a version the learner has published), is not older than the lag bound, and its
record id has not been accepted before; everything else is dropped and counted by reason. A
record beyond the run's ``RecordLimits`` (tokens beyond the sampling budget, masks larger
than the run's) is dead-lettered unread (``rejected``). No record can make ``collect`` raise. Messages are
acknowledged only after the learner step that used them (``ack_step``), so a driver that dies
mid-step leaves them pending for its successor.

Faults (docs/RELIABILITY.md): groups whose sampling was redone under new ids (their actor died)
or whose step was rolled back (the learner died) are abandoned, so a late record of theirs is
dropped, never learned; a step not learned from (non-finite loss) is dropped whole. Every drop
is counted.

Asynchronous job: the groups of steps sampled ahead are announced (``expect``); their records,
read while an earlier step is collected, are kept for their own step, unacknowledged. A group
more than ``max_lag`` versions older than the learner is dropped whole at its first record
(``stale_dropped``), and its step does not wait for it.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from aurora_rl.config.schema import QueueConfig
from aurora_rl.record_stream import RecordStream
from aurora_rl.records import RecordLimits, RolloutRecord


class StepCollector:
    def __init__(self, client, queue: QueueConfig, max_lag: int, consumer: str = "driver",
                 limits: Optional[RecordLimits] = None):
        limits = limits or RecordLimits(queue.max_record_bytes)
        self.stream = RecordStream(client, queue.scored_stream, "learner", limits)
        self.stream.ensure_group()
        # read only (its depth, for the error that names a stalled step): the learner's Redis user
        # may not touch the rollout stream's group, which the job made as the owner
        self.rollout = RecordStream(client, queue.rollout_stream, "scorers", limits)
        self.max_lag = max_lag
        self.consumer = consumer
        self.accepted: set[str] = set()
        self.abandoned: set[str] = set()
        self.abandoned_prefixes: tuple[str, ...] = ()
        self.pending_acks: list[bytes] = []
        # asynchronous job: the groups of steps sampled ahead (``expect``), and their records that
        # arrive while an earlier step is collected (kept unacknowledged until their own step)
        self.expected: set[str] = set()
        self.early: dict[str, list] = {}
        self.step_groups: list[str] = []  # the complete groups of the step in progress
        self.step_group_size = 0
        self.dropped_groups: dict[str, str] = {}  # group id -> the counter its whole group was dropped under
        self.counters = {"stale_dropped": 0, "duplicates_dropped": 0, "foreign_dropped": 0, "incomplete_groups": 0,
                         "abandoned_dropped": 0, "misfit_dropped": 0, "rejected": 0, "nan_dropped": 0}

    def collect(self, group_ids: list[str], group_size: int, version: int, timeout_s: float,
                while_waiting: Optional[Callable[[], object]] = None) -> list[list[RolloutRecord]]:
        """The complete groups among ``group_ids`` (in that order), each sorted by sample index;
        none when every group was stale.

        ``while_waiting`` is called about once a second while records are awaited (the job
        replaces dead reward workers there, and stops if they keep dying).
        """
        wanted = set(group_ids)
        self.expected -= wanted
        groups: dict[str, dict[int, RolloutRecord]] = {gid: {} for gid in group_ids}
        deadline = time.monotonic() + timeout_s
        next_look = time.monotonic() + 1.0
        need = len(group_ids) * group_size
        got = 0
        stale: set[str] = set()  # groups sampled too long ago: dropped whole, not waited for

        def take(delivery) -> None:
            nonlocal need, got
            self.pending_acks.append(delivery.message_id)
            r = delivery.record
            if self.is_abandoned(r.group_id):
                self.counters["abandoned_dropped"] += 1
            elif r.group_id not in wanted:
                self.counters["foreign_dropped"] += 1
            elif r.group_size != group_size or not 0 <= r.sample_index < group_size or r.policy_version > version:
                self.counters["misfit_dropped"] += 1  # not what the step's sampling made
            elif r.record_id in self.accepted or r.sample_index in groups[r.group_id]:
                self.counters["duplicates_dropped"] += 1
            elif version - r.policy_version > self.max_lag:
                self.counters["stale_dropped"] += 1 + len(groups[r.group_id])
                if r.group_id not in stale:  # a group's records share their version: all are stale
                    stale.add(r.group_id)
                    self.dropped_groups[r.group_id] = "stale_dropped"
                    need -= group_size
                    got -= len(groups[r.group_id])
                    groups[r.group_id].clear()
            else:
                groups[r.group_id][r.sample_index] = r
                got += 1

        for gid in group_ids:  # what arrived while earlier steps were collected
            for delivery in self.early.pop(gid, []):
                take(delivery)
        while got < need and time.monotonic() < deadline:
            if while_waiting is not None and time.monotonic() >= next_look:
                while_waiting()
                next_look = time.monotonic() + 1.0
            for delivery in self.stream.read(self.consumer, count=256, block_ms=200):
                gid = delivery.record.group_id
                if gid in self.expected and not self.is_abandoned(gid):
                    self.early.setdefault(gid, []).append(delivery)  # a later step's: kept for it
                else:
                    take(delivery)
            self.counters["rejected"] = self.stream.rejected
        complete = []
        self.step_groups, self.step_group_size = [], group_size
        for gid in group_ids:
            if len(groups[gid]) == group_size:
                complete.append([groups[gid][k] for k in range(group_size)])
                self.accepted.update(r.record_id for r in complete[-1])
                self.step_groups.append(gid)
            elif gid not in stale:
                self.counters["incomplete_groups"] += 1
        if not complete and len(stale) < len(group_ids):
            raise RuntimeError(
                f"no complete group arrived within {timeout_s:.0f} s ({got}/{need} records; "
                f"rollout stream depth {self.rollout_depth()}): are the reward workers running?")
        return complete

    def ack_step(self) -> None:
        self.stream.ack(self.pending_acks)
        self.pending_acks = []
        self.step_groups = []

    def expect(self, group_ids) -> None:
        """Groups of a step sampled ahead: their records are kept for that step's ``collect``."""
        self.expected.update(group_ids)

    def abandon(self, group_ids) -> None:
        """Never accept records of these groups (their sampling was cut short and redone under
        other ids, or their step was rolled back); any that arrive are dropped and counted."""
        self.abandoned.update(group_ids)
        self._drop_early()

    def _drop_early(self) -> None:
        """Records kept for a later step whose groups were since abandoned: dropped and counted."""
        for gid in [g for g in self.early if self.is_abandoned(g)]:
            kept = self.early.pop(gid)
            self.counters["abandoned_dropped"] += len(kept)
            self.pending_acks += [d.message_id for d in kept]
        self.expected = {g for g in self.expected if not self.is_abandoned(g)}

    def is_abandoned(self, group_id: str) -> bool:
        return group_id in self.abandoned or group_id.startswith(self.abandoned_prefixes)

    def drop_step(self, counter: str) -> int:
        """The step's collected records will not be learned from: count them under ``counter``
        and acknowledge what was read. Returns how many records that was."""
        dropped = len(self.step_groups) * self.step_group_size
        self.counters[counter] += dropped
        self.dropped_groups.update(dict.fromkeys(self.step_groups, counter))
        self.ack_step()
        return dropped

    def abandon_step(self, prefixes: list[str]) -> int:
        """Give up the step in progress and every group whose id starts with one of ``prefixes``
        (steps rolled back after the learner died): what was collected is dropped and counted, and
        so is anything of those groups that arrives later. Returns how many records were dropped now."""
        self.abandoned_prefixes += tuple(prefixes)
        self._drop_early()
        return self.drop_step("abandoned_dropped")

    def rollout_depth(self) -> int:
        return self.rollout.depth() if self.rollout.client.exists(self.rollout.stream) else 0

    def scored_depth(self) -> int:
        return self.stream.depth()
