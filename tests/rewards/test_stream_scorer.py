"""StreamScorer.run in this process: stop conditions, and riding out a Redis crash and restart."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from aurora_rl.config.schema import QueueConfig, RewardConfig
from aurora_rl.record_stream import RecordStream
from aurora_rl.records import decode
from aurora_rl.services.redis_server import RedisServer
from rewards.stream_scorer import GROUP, StreamScorer, request_stop, scorer_client, seen_key
from tests.rewards.known_records import make_records


def queue_config() -> QueueConfig:
    tag = uuid.uuid4().hex[:8]
    return QueueConfig(rollout_stream=f"test:rollouts:{tag}", scored_stream=f"test:scored:{tag}", claim_idle_ms=500)


def test_run_stops_on_idle_time_and_on_the_stop_key(redis_server, truth):
    q = queue_config()
    scorer = StreamScorer(scorer_client(redis_server.url, 100), q, RewardConfig(), truth, "w0")
    scorer.ensure_group()
    t0 = time.monotonic()
    assert scorer.run(stop_when_idle_s=0.3, block_ms=100)["scored"] == 0
    assert 0.3 <= time.monotonic() - t0 < 2.0
    request_stop(redis_server.client(), q.rollout_stream, ttl_s=5)
    t0 = time.monotonic()
    scorer.run(block_ms=100)  # no bound given: only the key ends it
    assert time.monotonic() - t0 < 1.0


def wait_len(client, stream: str, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.xlen(stream) < count:
        assert time.monotonic() < deadline, f"{client.xlen(stream)} of {count} in {stream}"
        time.sleep(0.05)


@pytest.mark.parametrize("appendonly", [True, False], ids=["aof", "comes-back-empty"])
def test_scorer_rides_out_a_redis_crash_and_restart(tmp_path, truth, uids, caplog, appendonly, request):
    # a row of the fault table with the AOF; without it a crash loses what Redis held, by design
    row = request.getfixturevalue("fault_row") if appendonly else {}
    row["fault"] = "Redis SIGKILLed under a reward worker (AOF)"
    server = RedisServer(workdir=tmp_path / "redis", appendonly=appendonly).start()
    try:
        q = queue_config()
        client = server.client()
        stream = RecordStream(client, q.rollout_stream, GROUP)
        stream.ensure_group()
        records, _ = make_records(truth, uids, 12)
        scorer = StreamScorer(scorer_client(server.url, 100), q, RewardConfig(), truth, "w0")
        stop, result = threading.Event(), {}
        thread = threading.Thread(target=lambda: result.update(scorer.run(stop.is_set, block_ms=100)))
        thread.start()
        for r in records[:6]:
            stream.publish(r)
        wait_len(client, q.scored_stream, 6)
        time.sleep(1.2)  # appendfsync everysec: let the AOF hold what happened so far
        server.crash()
        time.sleep(0.5)  # the scorer now fails and backs off
        server.start()
        for r in records[6:]:
            stream.publish(r)
        survivors = records if appendonly else records[6:]  # without the AOF the first 6 are gone
        wait_len(client, q.scored_stream, len(survivors))
        stop.set()
        thread.join(timeout=10)
        ids = [decode(f[b"r"]).record_id for _, f in client.xrange(q.scored_stream)]
        row.update(lost=len({r.record_id for r in records} - set(ids)), duplicated=len(ids) - len(set(ids)),
                   dropped=client.xlen(stream.dead_stream))
        assert not thread.is_alive()
        assert result["scored"] == 12 and result["duplicates"] == 0
        assert sorted(ids) == sorted(r.record_id for r in survivors)
        assert stream.pending() == 0
        assert "redis unavailable" in caplog.text and "reachable again" in caplog.text
    finally:
        server.stop()


def test_record_ids_are_forgotten_after_the_window_or_with_the_seen_key(redis_server, truth, uids):
    q = queue_config()
    client = redis_server.client()
    stream = RecordStream(client, q.rollout_stream, GROUP)
    scorer = StreamScorer(scorer_client(redis_server.url, 100), q, RewardConfig(), truth, "w0", dedupe_ttl_s=0.5)
    scorer.ensure_group()
    (record,), _ = make_records(truth, uids, 1)

    def publish_and_step():
        stream.publish(record)
        assert scorer.step(block_ms=100) == 1

    publish_and_step()
    publish_and_step()
    assert (scorer.counts["scored"], scorer.counts["duplicates"]) == (1, 1)
    assert client.zcard(seen_key(q.scored_stream)) == 1
    time.sleep(0.6)  # past the window: a fresh run reusing the id is scored again
    publish_and_step()
    client.delete(seen_key(q.scored_stream))  # what a driver does when it resets the streams
    publish_and_step()
    assert (scorer.counts["scored"], scorer.counts["duplicates"]) == (3, 1)
    assert client.xlen(q.scored_stream) == 3
    assert 0 < client.pttl(seen_key(q.scored_stream)) <= 500  # an abandoned set expires by itself
