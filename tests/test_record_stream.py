"""Rollout records through the private Redis: consumer groups, acks, reclaim, malformed records."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from aurora_rl.record_stream import RecordStream
from aurora_rl.records import RolloutRecord


def record(i: int) -> RolloutRecord:
    return RolloutRecord(
        uid=f"clip_{i}", group_id=f"g{i // 3}", sample_index=i % 3, group_size=3, policy_version=1,
        prompt_token_ids=np.arange(4), completion_token_ids=np.array([i, i + 1]),
        sampling_logprobs=np.array([-0.5, -0.25]), completion_text=f"answer {i}",
    ).with_masks(np.eye(4, dtype=bool)[None].repeat(2, axis=0))


@pytest.fixture()
def stream(redis_server):
    s = RecordStream(redis_server.client(), f"test:{uuid.uuid4().hex}", "scorers")
    s.ensure_group()
    s.ensure_group()  # idempotent
    return s


def test_msgpack_record_round_trip_through_redis(stream):
    sent = [record(i) for i in range(6)]
    for r in sent:
        stream.publish(r)
    assert stream.depth() == 6
    got = stream.read("w0", count=10, block_ms=100)
    assert [d.record.record_id for d in got] == [r.record_id for r in sent]
    assert np.array_equal(got[4].record.masks(), sent[4].masks())
    assert stream.pending() == 6
    assert stream.ack([d.message_id for d in got]) == 6
    assert stream.pending() == 0 and stream.depth() == 0


def test_messages_of_a_dead_consumer_are_reclaimed_once(stream):
    for i in range(4):
        stream.publish(record(i))
    taken = stream.read("dead-worker", count=4, block_ms=100)
    assert len(taken) == 4  # taken, never acknowledged
    assert stream.read("live-worker", count=4, block_ms=50) == []
    reclaimed = []
    while one := stream.reclaim("live-worker", min_idle_ms=0):  # one at a time, oldest first
        assert len(one) == 1
        reclaimed += one
        stream.ack([one[0].message_id])
    assert [d.record.record_id for d in reclaimed] == [d.record.record_id for d in taken]
    assert stream.reclaim("third-worker", min_idle_ms=0) == []
    assert stream.pending() == 0 and stream.poisoned == 0


def test_malformed_records_go_to_the_dead_stream_counted(stream):
    stream.publish(record(0))
    stream.publish_raw(b"\x00 not msgpack")
    stream.publish(record(1))
    got = stream.read("w0", count=10, block_ms=100)
    assert [d.record.uid for d in got] == ["clip_0", "clip_1"]
    assert stream.rejected == 1
    dead = stream.client.xrange(stream.dead_stream)
    assert len(dead) == 1 and b"not a msgpack record" in dead[0][1][b"reason"]
    stream.ack([d.message_id for d in got])
    assert stream.pending() == 0  # the bad one was acknowledged too: nothing stuck
