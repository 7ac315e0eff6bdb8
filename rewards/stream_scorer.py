"""One scoring pass over the rollout stream: read (or reclaim), score, publish + acknowledge.

Exactly-once output on an at-least-once stream: a Lua script does, in one atomic step per
record, ``ZADD <scored>:seen NX <now> <record id>`` -> ``XADD`` the scored record only if the id
is new -> ``XACK`` the rollout message. A message delivered twice (reclaimed from a slow
consumer, or the same record published twice) therefore adds one scored record; the second
delivery is only acknowledged and counted as a duplicate. A crash between reading and the
script leaves the message pending, so another consumer reclaims it after ``claim_idle_ms``, one
message at a time; one delivered ``queue.max_deliveries`` times (its consumers died on it: a
poison record) goes to the dead stream instead (``RecordStream.reclaim``). A record whose
handling raises anything is dead-lettered with the reason and the scorer goes on.
Ids are remembered for ``dedupe_ttl_s`` (the script trims older ones). They live in ONE key,
not a key per record, so that a driver starting a fresh run on reused stream names (group ids
repeat across runs) forgets them by deleting ``seen_key(scored_stream)`` with the streams.

``run`` loops ``step`` until told to stop (a ``stop`` callable, the Redis key ``<rollout
stream>:stop``, a time or idleness bound) and rides out Redis outages: connection errors are
retried with exponential backoff and logged, and the group is created again after an outage
(a Redis that lost its data comes back without it). No Ray here: ``RewardWorker`` (reward_worker.py) runs this in an actor.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Optional

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from aurora_rl.config.schema import QueueConfig, RewardConfig
from aurora_rl.data.errors import DataError
from aurora_rl.record_stream import FIELD, Delivery, RecordStream
from aurora_rl.records import RecordLimits, encode
from rewards.ground_truth import GroundTruth
from rewards.reward_functions import REWARD_KINDS, score_record

GROUP = "scorers"
log = logging.getLogger(__name__)


def scorer_client(redis_url: str, block_ms: int = 500, name: Optional[str] = None) -> redis.Redis:
    """A client without redis-py's silent retries: errors reach ``StreamScorer.run``, which backs
    off and logs them. The socket timeout outlasts a blocking read so only a dead link trips it.
    ``name`` shows in CLIENT LIST (which worker holds which connection)."""
    return redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2.0,
                                socket_timeout=block_ms / 1000.0 + 5.0, client_name=name)


def metadata_row(record) -> int:
    """The metadata line a record was sampled from (``meta["row"]``: uids repeat, rows do not)."""
    row = record.meta.get("row")
    if not isinstance(row, int) or isinstance(row, bool):
        raise ValueError(f"record {record.record_id} names no metadata row (meta.row is {row!r})")
    return row


def seen_key(scored_stream: str) -> str:
    """The sorted set of record ids already published to ``scored_stream`` (score: time in ms)."""
    return f"{scored_stream}:seen"


def stop_key(rollout_stream: str) -> str:
    """Setting this key stops every scorer of ``rollout_stream`` (see ``request_stop``)."""
    return f"{rollout_stream}:stop"


def request_stop(client: redis.Redis, rollout_stream: str, ttl_s: float = 300.0) -> None:
    """Ask all scorers of the stream to stop. The key expires so that a later pool is not
    stopped by an old request; scorers look at it every ``block_ms``, far below the TTL."""
    client.set(stop_key(rollout_stream), b"1", px=int(ttl_s * 1000))


# KEYS: seen set, scored stream, rollout stream. ARGV: window ms, group, message id, field, payload,
# record id. Returns 1 when the record was published, 0 when it had been already (then only acked).
# TIME in a script is fine: Redis 7 replicates a script's effects, not the script.
COMMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local new = redis.call('ZADD', KEYS[1], 'NX', now, ARGV[6])
if new == 1 then
  redis.call('XADD', KEYS[2], '*', ARGV[4], ARGV[5])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
return new
"""


class StreamScorer:
    """Scores what ``consumer`` reads from ``queue.rollout_stream`` into ``queue.scored_stream``.

    Args:
        client: a Redis client (its errors propagate: the caller retries).
        queue: stream names, record size limit, claim_idle_ms.
        reward: reward weights and variant.
        truth: row (the record's ``meta['row']``, its metadata line) -> ground truth.
        consumer: this consumer's name in group "scorers" (unique per worker).
        batch: messages per read.
        dedupe_ttl_s: how long a record id is remembered; must exceed any redelivery delay
            (claim_idle_ms plus scoring time), so an hour is ample (about 100 B per record).
        limits: what a record of the run can hold (``RecordLimits.for_run``); default: only
            ``queue.max_record_bytes``.
    """

    def __init__(self, client: redis.Redis, queue: QueueConfig, reward: RewardConfig, truth: GroundTruth,
                 consumer: str, batch: int = 32, dedupe_ttl_s: float = 3600.0, limits: Optional[RecordLimits] = None):
        self.client = client
        self.queue = queue
        self.reward = reward
        self.truth = truth
        self.consumer = consumer
        self.batch = batch
        self.dedupe_ttl_ms = int(dedupe_ttl_s * 1000)
        self.stream = RecordStream(client, queue.rollout_stream, GROUP, limits or RecordLimits(queue.max_record_bytes))
        self.commit = client.register_script(COMMIT_LUA)
        self.counts = {"scored": 0, "duplicates": 0, "reclaimed": 0, "unscorable": 0}  # + rejected, poisoned
        self.reward_sums = dict.fromkeys(REWARD_KINDS + ("total",), 0.0)
        self.busy_s = 0.0  # time spent scoring and committing, not waiting for messages
        self._next_reclaim = 0.0

    @property
    def rejected(self) -> int:
        """Malformed or out-of-range records sent to the dead stream by ``RecordStream``."""
        return self.stream.rejected

    @property
    def poisoned(self) -> int:
        """Records this scorer dead-lettered for being delivered ``max_deliveries`` times."""
        return self.stream.poisoned

    def ensure_group(self) -> None:
        self.stream.ensure_group()

    def step(self, block_ms: int = 500) -> int:
        """Reclaim idle messages when due, else read new ones; score and commit. Returns messages handled."""
        deliveries = []
        if time.monotonic() >= self._next_reclaim:
            deliveries = self.stream.reclaim(self.consumer, self.queue.claim_idle_ms, self.queue.max_deliveries)
            self.counts["reclaimed"] += len(deliveries)
            if not deliveries:  # one at a time while there are some; then twice per claim_idle_ms
                self._next_reclaim = time.monotonic() + self.queue.claim_idle_ms / 2000.0
        if not deliveries:
            deliveries = self.stream.read(self.consumer, count=self.batch, block_ms=block_ms)
        start = time.monotonic()
        self._score_and_commit(deliveries)
        self.busy_s += time.monotonic() - start
        return len(deliveries)

    def stats(self, elapsed_s: float) -> dict:
        """Counters plus records/s over ``elapsed_s`` (wall time of the run) and over busy time."""
        out = dict(self.counts, rejected=self.rejected, poisoned=self.poisoned, busy_s=self.busy_s, elapsed_s=elapsed_s)
        out["records_per_s"] = self.counts["scored"] / elapsed_s if elapsed_s > 0 else 0.0
        handled = self.counts["scored"] + self.counts["duplicates"]
        out["capacity_per_s"] = handled / self.busy_s if self.busy_s > 0 else 0.0
        return out

    def run(self, should_stop: Callable[[], bool] = lambda: False, max_seconds: Optional[float] = None,
            stop_when_idle_s: Optional[float] = None, block_ms: int = 500, on_step: Optional[Callable] = None,
            backoff_s: tuple[float, float] = (0.05, 5.0)) -> dict:
        """Score until ``should_stop()``, the stop key, ``max_seconds`` of running, or
        ``stop_when_idle_s`` without a message; returns ``stats``.

        ``on_step`` is called after every successful step (the actor updates its metrics there).
        Redis connection errors back off from ``backoff_s[0]`` doubling to ``backoff_s[1]``; what was
        read but not committed stays pending in Redis and is reclaimed, so nothing is lost.
        """
        start = last_work = time.monotonic()
        failures = 0
        group_ready = False  # (re)created after every outage: a Redis without its AOF comes back empty
        while not should_stop():
            now = time.monotonic()
            if max_seconds is not None and now - start >= max_seconds:
                break
            if stop_when_idle_s is not None and now - last_work >= stop_when_idle_s:
                break
            try:
                if not group_ready:
                    self.ensure_group()
                    group_ready = True
                if self.client.exists(stop_key(self.queue.rollout_stream)):
                    break
                if self.step(block_ms):
                    last_work = time.monotonic()
            except (redis.ConnectionError, redis.TimeoutError) as e:  # BusyLoadingError (AOF replay) too
                failures += 1
                group_ready = False
                delay = min(backoff_s[1], backoff_s[0] * 2 ** (failures - 1))
                log.warning("reward scorer %s: redis unavailable (%s: %s); retry %d in %.2f s",
                            self.consumer, type(e).__name__, e, failures, delay)
                time.sleep(delay)
                continue
            except redis.ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                log.warning("reward scorer %s: stream or group deleted under us; creating it again", self.consumer)
                group_ready = False
                continue
            if failures:
                log.warning("reward scorer %s: redis reachable again after %d retries", self.consumer, failures)
                failures = 0
            if on_step is not None:
                on_step()
        return self.stats(time.monotonic() - start)

    def _score_and_commit(self, deliveries: list[Delivery]) -> None:
        pipe = self.client.pipeline(transaction=False)
        commits = []  # (position of the script reply in the pipeline's results, scores)
        for d in deliveries:
            record = d.record
            try:
                truth = self.truth(metadata_row(record))
                scores = score_record(record, truth.masks, truth.target_class, self.reward)
            except Exception as e:  # noqa: BLE001 - one record's failure must not stop the pool
                # Well-formed but not scorable (no or unknown row, mask shape, a ground-truth file that is
                # missing or unreadable, memory): dead-letter it rather than leave it pending and reclaimed.
                self.counts["unscorable"] += 1
                reason = e if isinstance(e, (DataError, ValueError)) else f"{type(e).__name__}: {e}"
                pipe.xadd(self.stream.dead_stream,
                          {b"id": d.message_id, b"record": record.record_id.encode(), b"reason": str(reason).encode()[:500]})
                pipe.xack(self.stream.stream, GROUP, d.message_id)
                continue
            scored = dataclasses.replace(record, rewards={k: scores[k] for k in REWARD_KINDS}, reward=scores["total"])
            commits.append((len(pipe), scores))
            self.commit(
                keys=[seen_key(self.queue.scored_stream), self.queue.scored_stream, self.stream.stream],
                args=[self.dedupe_ttl_ms, GROUP, d.message_id, FIELD, encode(scored), record.record_id],
                client=pipe,
            )
        if not len(pipe):
            return
        results = pipe.execute()
        for position, scores in commits:
            if results[position] == 1:
                self.counts["scored"] += 1
                for k, v in scores.items():
                    self.reward_sums[k] += v
            else:
                self.counts["duplicates"] += 1
