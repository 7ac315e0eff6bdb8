"""One Redis ACL user per role (aurora_rl/services/redis_acl.py), on a real Redis with the real
stream code: each role does its whole job with its own user and is refused everything else; the
users come back after Redis restarts from its append-only file."""

from __future__ import annotations

import uuid

import pytest
import redis

from aurora_rl.config.schema import QueueConfig, RewardConfig
from aurora_rl.record_stream import RecordStream
from aurora_rl.services.job_file import with_login
from aurora_rl.services.redis_acl import ROLES, RoleUsers, role_rules
from aurora_rl.services.redis_client import connect_redis
from aurora_rl.services.redis_server import RedisServer
from learner.grpo_collect import StepCollector
from rewards.stream_scorer import GROUP, StreamScorer, scorer_client, seen_key, stop_key
from tests.rewards.known_records import make_records


def queue_config() -> QueueConfig:
    tag = uuid.uuid4().hex[:8]
    return QueueConfig(rollout_stream=f"aurora:rollouts:acl-{tag}", scored_stream=f"aurora:scored:acl-{tag}",
                       claim_idle_ms=500)


def refused(call) -> bool:
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_each_role_does_its_work_with_its_own_user_and_nothing_else(redis_server, truth, uids):
    q = queue_config()
    owner = redis_server.client()
    RecordStream(owner, q.rollout_stream, GROUP).ensure_group()  # the driver makes the groups as the owner
    users = RoleUsers(redis_server.url, "acl test", q.rollout_stream, q.scored_stream)
    urls = users.create()
    try:
        assert all(redis_server.password not in u for u in urls.values())
        rollout, reward, learner = (redis.Redis.from_url(urls[r]) for r in ROLES)
        records, _ = make_records(truth, uids, 6)

        # each role's whole part of a step, with the project's own stream code
        published = RecordStream(connect_redis(urls["rollout"], retries=0), q.rollout_stream, GROUP)
        for r in records:
            published.publish(r)
        published.publish_raw(b"\x00 not a record")  # dead-lettered by the reward worker
        scorer = StreamScorer(scorer_client(urls["reward"], 100), q, RewardConfig(), truth, "w0")
        scorer.ensure_group()
        while scorer.step(block_ms=100):
            pass
        assert scorer.counts["scored"] == 6 and scorer.rejected == 1
        assert owner.xlen(f"{q.rollout_stream}:dead") == 1
        collector = StepCollector(learner, q, max_lag=0)
        groups = collector.collect(sorted({r.group_id for r in records}), 3, version=0, timeout_s=10)
        assert sum(len(g) for g in groups) == 6
        collector.ack_step()
        assert collector.stream.pending() == 0 and collector.rollout_depth() == 0
        collector.stream.dead_letter(b"0-1", "a record beyond the run's limits")  # the learner's own dead letters
        assert owner.xlen(f"{q.scored_stream}:dead") == 1

        # and nothing else: what a compromised worker of each role would try first
        forged = owner.xrange(q.scored_stream)[0][1]
        assert refused(lambda: rollout.xadd(q.scored_stream, forged))  # forge a scored record
        assert refused(lambda: rollout.xrange(q.rollout_stream))  # read others' rollouts
        assert refused(lambda: rollout.delete(q.rollout_stream))
        assert refused(lambda: rollout.xadd("other:stream", {"r": b"x"}))
        assert refused(lambda: learner.xadd(q.scored_stream, forged))  # only reward workers score
        assert refused(lambda: learner.xadd(q.rollout_stream, {"r": b"x"}))
        assert refused(lambda: learner.delete(seen_key(q.scored_stream)))
        assert refused(lambda: reward.xadd(q.rollout_stream, {"r": b"x"}))
        assert refused(lambda: reward.set(stop_key(q.rollout_stream), b"1"))
        assert refused(lambda: reward.delete(q.scored_stream))
        for client in (rollout, reward, learner):
            assert refused(lambda: client.keys("*"))
            assert refused(lambda: client.config_get("requirepass"))
            assert refused(lambda: client.execute_command("ACL", "SETUSER", "x", "on", ">x", "+@all", "~*"))
            assert refused(lambda: client.flushall())
            assert refused(lambda: client.eval("return redis.call('XADD', KEYS[1], '*', 'r', 'x')", 1, "other"))
        assert owner.xlen(q.scored_stream) == 6  # the refused writes left nothing
    finally:
        users.delete()
    assert not set(users.names.values()) & {u.decode() for u in owner.execute_command("ACL", "USERS")}


def test_key_patterns_match_only_the_run_s_own_streams():
    rules = role_rules("rollout", "aurora:rollouts:run[1]*", "aurora:scored:run[1]*")
    assert rules[-1] == r"%W~aurora:rollouts:run\[1\]\*"
    assert with_login("redis://:pw@10.0.0.5:6390/0", "aurora-x-rollout", "abc") == "redis://aurora-x-rollout:abc@10.0.0.5:6390/0"
    assert with_login("redis://:pw@[fd00::5]:6390/0", "u", "p") == "redis://u:p@[fd00::5]:6390/0"
    with pytest.raises(ValueError, match="unknown Redis role"):
        role_rules("admin", "r", "s")


def test_users_are_made_again_after_a_redis_restart_and_clients_carry_on(tmp_path, truth, uids):
    server = RedisServer(workdir=tmp_path / "redis").start()
    q = queue_config()
    users = RoleUsers(server.url, "restart", q.rollout_stream, q.scored_stream)
    urls = users.create()
    users.keep(every_s=0.2)
    try:
        records, _ = make_records(truth, uids, 2)
        stream = RecordStream(connect_redis(urls["rollout"], retries=20), q.rollout_stream, GROUP)
        stream.publish(records[0])
        server.crash()
        server.start()  # from its AOF: the stream is back, the ACL users are not
        stream.publish(records[1])  # refused logins are retried until the keeper has made the users again
        assert server.client().xlen(q.rollout_stream) == 2
        assert users.remade >= 1 and users.missing() == []
    finally:
        users.delete()
        server.stop()


def test_a_redis_user_that_may_not_make_users_is_a_named_error(redis_server):
    owner = redis_server.client()
    owner.execute_command("ACL", "SETUSER", "limited", "reset", "on", ">limited-pw", "+@all", "-acl", "~*")
    try:
        url = with_login(redis_server.url, "limited", "limited-pw")
        with pytest.raises(PermissionError, match="may not create ACL users"):
            RoleUsers(url, "limited", "r", "s").create()
    finally:
        owner.execute_command("ACL", "DELUSER", "limited")
