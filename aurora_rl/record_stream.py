"""A Redis Stream of rollout records read through a consumer group.

Delivery is at-least-once: a message stays pending for its consumer until acknowledged, and
``reclaim`` hands messages idle longer than a bound (their consumer died) to another
consumer. Consumers make processing idempotent by record id (see the reward workers).
Malformed records are never handed out: they are copied to ``<stream>:dead`` with the
reason, acknowledged, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from aurora_rl.records import RecordError, RecordLimits, RolloutRecord, decode, encode

FIELD = b"r"


@dataclass
class Delivery:
    message_id: bytes
    record: RolloutRecord


class RecordStream:
    def __init__(self, client: redis.Redis, stream: str, group: str, limits: RecordLimits = RecordLimits()):
        self.client = client
        self.stream = stream
        self.group = group
        self.limits = limits  # what a record of the run can hold: beyond it, dead-lettered unread
        self.rejected = 0  # malformed or beyond the limits
        self.poisoned = 0  # delivered max_deliveries times without an acknowledgement

    @property
    def dead_stream(self) -> str:
        return f"{self.stream}:dead"

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def publish(self, record: RolloutRecord) -> bytes:
        return self.client.xadd(self.stream, {FIELD: encode(record)})

    def publish_raw(self, payload: bytes) -> bytes:
        """Add bytes as they are (fault tests use this to plant malformed records)."""
        return self.client.xadd(self.stream, {FIELD: payload})

    def read(self, consumer: str, count: int = 16, block_ms: int | None = 1000) -> list[Delivery]:
        """New messages for ``consumer`` (they stay pending until ``ack``)."""
        reply = self.client.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count, block=block_ms)
        return self._deliveries(reply[0][1] if reply else [])

    def reclaim(self, consumer: str, min_idle_ms: int, max_deliveries: int = 3) -> list[Delivery]:
        """Take over the oldest message pending longer than ``min_idle_ms`` in any consumer (its
        consumer died), at most one: its own delivery counts against it alone. Messages already
        delivered ``max_deliveries`` times are dead-lettered on the way, never handed out."""
        while True:
            pending = self.client.xpending_range(self.stream, self.group, "-", "+", 1, idle=min_idle_ms)
            if not pending:
                return []
            message_id, deliveries = pending[0]["message_id"], int(pending[0]["times_delivered"])
            if deliveries < max_deliveries:
                # XCLAIM re-checks the idle time: of two consumers reclaiming at once, one gets it
                return self._deliveries(self.client.xclaim(self.stream, self.group, consumer, min_idle_ms,
                                                           [message_id]))
            if self.client.xclaim(self.stream, self.group, consumer, min_idle_ms, [message_id], justid=True):
                self.poisoned += 1
                entry = self.client.xrange(self.stream, message_id, message_id, count=1)
                payload = entry[0][1].get(FIELD, b"") if entry else b""
                self.dead_letter(message_id, f"delivered {deliveries} times and never acknowledged: its consumers "
                                             "died handling it (queue.max_deliveries)", payload)

    def dead_letter(self, message_id: bytes, reason: str, payload: bytes = b"") -> None:
        """Copy a message to the dead stream with why (and its bytes, up to the record limit), then
        acknowledge it: it is neither lost nor handed out again."""
        fields = {b"id": message_id, b"reason": reason.encode()[:500]}
        if payload:
            fields[b"payload"] = payload[: self.limits.max_bytes]
        self.client.xadd(self.dead_stream, fields)
        self.ack([message_id])

    def ack(self, message_ids: list[bytes]) -> int:
        return self.client.xack(self.stream, self.group, *message_ids) if message_ids else 0

    def pending(self) -> int:
        return int(self.client.xpending(self.stream, self.group)["pending"])

    def depth(self) -> int:
        """Messages not yet delivered to the group plus those delivered but not acknowledged."""
        info = {g["name"]: g for g in self.client.xinfo_groups(self.stream)}
        group = info.get(self.group.encode()) or info.get(self.group)
        if group is None:
            return self.client.xlen(self.stream)
        lag = group.get("lag")
        return int(lag or 0) + int(group["pending"])

    def _deliveries(self, messages) -> list[Delivery]:
        out = []
        for message_id, fields in messages:
            if fields is None:  # deleted while pending
                self.ack([message_id])
                continue
            payload = fields.get(FIELD)
            try:
                if payload is None:
                    raise RecordError(f"message has no {FIELD!r} field")
                out.append(Delivery(message_id, decode(payload, self.limits)))
            except RecordError as e:
                self.rejected += 1
                self.dead_letter(message_id, str(e))
        return out
