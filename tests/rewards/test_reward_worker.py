"""RewardWorker actors on the private Redis and Ray node: delivery, dedupe, reclaim, dead letters."""

from __future__ import annotations

import os
import shutil
import time
import uuid

import numpy as np
import pytest
import ray

from aurora_rl.config.schema import DataConfig, QueueConfig, RewardConfig
from aurora_rl.data import refavs_layout as layout
from aurora_rl.record_stream import RecordStream
from aurora_rl.records import RolloutRecord, decode
from rewards.ground_truth import GroundTruth
from rewards.reward_worker import RewardWorker
from rewards.stream_scorer import GROUP, request_stop
from tests.rewards.known_records import make_records

MASK = 32


@pytest.fixture()
def queue():
    tag = uuid.uuid4().hex[:8]
    return {"rollout_stream": f"test:rollouts:{tag}", "scored_stream": f"test:scored:{tag}", "claim_idle_ms": 500}


@pytest.fixture(scope="module")
def truth(synthetic_root):
    return GroundTruth(synthetic_root, None, MASK)


@pytest.fixture(scope="module")
def uids(synthetic_root):
    return [r.uid for r in layout.read_metadata(synthetic_root) if r.split == "train"][:8]


def start_worker(redis_server, queue, root, name, **kwargs):
    worker = RewardWorker.remote(redis_server.url, QueueConfig(**queue), RewardConfig(),
                                 DataConfig(root=str(root), mask_size=MASK), name, block_ms=200, **kwargs)
    ray.get(worker.stats.remote(), timeout=60)  # constructed: the group exists once run() starts
    return worker


def rollout_stream(redis_server, queue) -> RecordStream:
    stream = RecordStream(redis_server.client(), queue["rollout_stream"], GROUP)
    stream.ensure_group()
    return stream


def wait_blocked_reading(client, consumers: list[str], timeout_s: float = 30.0) -> None:
    names = {f"reward-worker:{c}" for c in consumers}
    deadline = time.monotonic() + timeout_s
    while True:
        blocked = {c["name"] for c in client.client_list() if c["cmd"] == "xreadgroup" and "b" in c["flags"]}
        if names <= blocked:
            return
        assert time.monotonic() < deadline, f"blocked readers: {sorted(blocked)}"
        time.sleep(0.02)


def wait_scored(client, queue, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.xlen(queue["scored_stream"]) < count:
        assert time.monotonic() < deadline, f"only {client.xlen(queue['scored_stream'])} of {count} scored"
        time.sleep(0.05)


def scored_records(client, queue) -> list[RolloutRecord]:
    return [decode(fields[b"r"]) for _, fields in client.xrange(queue["scored_stream"])]


def check_scored(client, queue, expected: dict) -> None:
    """Every expected record id scored exactly once with the expected rewards."""
    got = scored_records(client, queue)
    ids = [r.record_id for r in got]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == set(expected)
    for r in got:
        want = expected[r.record_id]
        assert r.rewards == pytest.approx(want), r.record_id
        assert r.reward == pytest.approx(sum(want.values()))


def test_two_workers_score_every_record_exactly_once(ray_node, redis_server, synthetic_root, queue, truth, uids):
    client = redis_server.client()
    stream = rollout_stream(redis_server, queue)
    workers = [start_worker(redis_server, queue, synthetic_root, f"w{i}", batch=4) for i in range(2)]
    runs = [w.run.remote() for w in workers]
    wait_blocked_reading(client, ["w0", "w1"])  # so the first messages go to both
    records, expected = make_records(truth, uids, 60)
    for r in records:
        stream.publish(r)
    wait_scored(client, queue, 60)
    request_stop(client, queue["rollout_stream"])  # one key stops the whole pool
    stats = ray.get(runs, timeout=30)
    check_scored(client, queue, expected)
    assert sum(s["scored"] for s in stats) == 60
    assert all(s["scored"] > 0 for s in stats), stats  # both took part
    assert sum(s["duplicates"] + s["rejected"] + s["unscorable"] for s in stats) == 0
    assert all(s["records_per_s"] > 0 for s in stats)
    assert stream.pending() == 0


def test_a_record_delivered_twice_is_scored_once(ray_node, redis_server, synthetic_root, queue, truth, uids):
    client = redis_server.client()
    stream = rollout_stream(redis_server, queue)
    records, expected = make_records(truth, uids, 12)
    for r in records + records:  # every record published twice
        stream.publish(r)
    worker = start_worker(redis_server, queue, synthetic_root, "w0")
    run = worker.run.remote()
    wait_scored(client, queue, 12)
    time.sleep(0.3)  # let the second copies arrive too
    ray.get(worker.stop.remote())
    stats = ray.get(run, timeout=30)
    assert (stats["scored"], stats["duplicates"]) == (12, 12)
    check_scored(client, queue, expected)
    assert stream.pending() == 0


def blocking_copy(src, dst, uid: str):
    """Ground truth where frame 0 of ``uid`` is a FIFO: a worker that reaches it blocks, holding its
    batch unacknowledged, until the test writes the PNG into it."""
    dst.mkdir()
    shutil.copy(layout.metadata_path(src), layout.metadata_path(dst))
    shutil.copy(src / "scene_facts.jsonl", dst / "scene_facts.jsonl")
    shutil.copytree(src / "gt_mask", dst / "gt_mask")
    row = next(r for r in layout.read_metadata(src) if r.uid == uid)
    fifo = layout.mask_path(dst, row.vid, row.fid, 0)
    fifo.unlink()
    os.mkfifo(fifo)
    return dst, fifo, layout.mask_path(src, row.vid, row.fid, 0).read_bytes()


def held_by(client, queue, consumer: str) -> int:
    return len(client.xpending_range(queue["rollout_stream"], GROUP, "-", "+", 1000, consumer))


def wait_held(client, queue, consumer: str, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while held_by(client, queue, consumer) < count:
        assert time.monotonic() < deadline, f"{consumer} holds {held_by(client, queue, consumer)} of {count}"
        time.sleep(0.05)


def count_row(row: dict, client, queue, stream, expected: dict, fault: str) -> None:
    """The fault table's row, from the streams: records published and never scored are lost,
    scored copies beyond one duplicated, records dead-lettered dropped (and counted)."""
    ids = [r.record_id for r in scored_records(client, queue)]
    row.update(fault=fault, lost=len(set(expected) - set(ids)), duplicated=len(ids) - len(set(ids)),
               dropped=client.xlen(stream.dead_stream))


def test_killed_worker_messages_are_reclaimed_nothing_lost_or_doubled(
    ray_node, redis_server, synthetic_root, queue, truth, uids, tmp_path, fault_row
):
    client = redis_server.client()
    stream = rollout_stream(redis_server, queue)
    root, _, _ = blocking_copy(synthetic_root, tmp_path / "gt", uids[0])
    records, expected = make_records(truth, uids, 12)
    for r in records:  # all there before the first read, so one read takes them all
        stream.publish(r)
    doomed = start_worker(redis_server, queue, root, "doomed")
    doomed.run.remote()
    wait_held(client, queue, "doomed", 12)  # read, stuck on the FIFO, nothing acknowledged
    ray.kill(doomed)
    assert client.xlen(queue["scored_stream"]) == 0
    rescuer = start_worker(redis_server, queue, synthetic_root, "rescuer")
    run = rescuer.run.remote()
    wait_scored(client, queue, 12)
    time.sleep(0.6)  # a further reclaim pass finds nothing new
    ray.get(rescuer.stop.remote())
    stats = ray.get(run, timeout=30)
    count_row(fault_row, client, queue, stream, expected,
              "reward worker killed holding unacknowledged messages (reclaimed)")
    assert stats["reclaimed"] == 12 and stats["scored"] == 12 and stats["duplicates"] == 0
    check_scored(client, queue, expected)
    assert stream.pending() == 0


def test_slow_consumer_finishing_after_a_reclaim_adds_nothing(
    ray_node, redis_server, synthetic_root, queue, truth, uids, tmp_path, fault_row
):
    """The same message ids committed twice (reclaimed from a live consumer): one scored copy."""
    client = redis_server.client()
    stream = rollout_stream(redis_server, queue)
    root, fifo, png = blocking_copy(synthetic_root, tmp_path / "gt", uids[0])
    records, expected = make_records(truth, uids, 9)
    for r in records:
        stream.publish(r)
    slow = start_worker(redis_server, queue, root, "slow")
    slow_run = slow.run.remote()
    wait_held(client, queue, "slow", 9)
    fast = start_worker(redis_server, queue, synthetic_root, "fast")
    fast_run = fast.run.remote()
    wait_scored(client, queue, 9)
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails (ENXIO) unless "slow" is reading it
    os.write(fd, png)
    os.close(fd)
    deadline = time.monotonic() + 30
    while ray.get(slow.stats.remote())["duplicates"] < 9:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    request_stop(client, queue["rollout_stream"])
    slow_stats, fast_stats = ray.get([slow_run, fast_run], timeout=30)
    count_row(fault_row, client, queue, stream, expected,
              "slow reward worker finishing after its messages were reclaimed")
    assert (slow_stats["scored"], slow_stats["duplicates"]) == (0, 9)
    assert (fast_stats["scored"], fast_stats["reclaimed"]) == (9, 9)
    check_scored(client, queue, expected)
    assert stream.pending() == 0


def test_malformed_and_unscorable_records_go_to_the_dead_stream(
    ray_node, redis_server, synthetic_root, queue, truth, uids
):
    client = redis_server.client()
    stream = rollout_stream(redis_server, queue)
    records, expected = make_records(truth, uids, 3)
    stream.publish(records[0])
    stream.publish_raw(b"\x00 not msgpack")
    stream.publish_raw(b"\x81\xa6schema\x63")  # msgpack, wrong schema version
    unknown = RolloutRecord(**{**records[1].__dict__, "meta": {"row": 10**6}, "group_id": "x"})  # no such row
    wrong_shape = records[1].with_masks(np.zeros((10, 8, 8), dtype=bool))
    wrong_shape.group_id = "y"
    stream.publish(unknown)
    stream.publish(wrong_shape)
    stream.publish(records[1])
    stream.publish(records[2])
    worker = start_worker(redis_server, queue, synthetic_root, "w0")
    run = worker.run.remote()
    wait_scored(client, queue, 3)
    ray.get(worker.stop.remote())
    stats = ray.get(run, timeout=30)
    assert (stats["scored"], stats["rejected"], stats["unscorable"]) == (3, 2, 2)
    check_scored(client, queue, expected)
    dead = client.xrange(stream.dead_stream)
    reasons = b" | ".join(fields[b"reason"] for _, fields in dead)
    assert len(dead) == 4
    assert b"not a msgpack record" in reasons and b"schema version" in reasons
    assert b"row 1000000 is not in this ground truth" in reasons
    assert stream.pending() == 0
