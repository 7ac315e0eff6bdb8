"""Faults injected into one running asynchronous GRPO job (``learner.max_policy_lag = 1``: vLLM
rollout actors that stage new weights while they sample, reward workers, a DeepSpeed learner, a
private Redis with its append-only file): a rollout actor SIGKILLed mid-sample, a broadcast
receiver SIGKILLed inside the broadcast, Redis killed and restarted, a non-finite loss, reward
workers killed.

After each fault the job goes on, and its records are counted end to end (tests/reliability/
accounting.py): nothing lost, nothing learned twice, every drop counted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aurora_rl.services.redis_server import RedisServer
from tests.grpo.test_grpo_job import assert_actors_match_learner, job_config, started_job
from tests.reliability.accounting import account
from tests.reliability.conftest import fault_lag, pid_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
P, G = 3, 3


@pytest.fixture(scope="module")
def redis_aof(tmp_path_factory, started_pids):
    """A Redis of this module's own (it gets killed), append-only file on."""
    server = RedisServer(workdir=tmp_path_factory.mktemp("redis"), appendonly=True).start()
    try:
        yield server
    finally:
        started_pids.append(server.pid)
        server.stop()


@pytest.fixture(scope="module")
def job(ray_node, redis_aof, synthetic_root, tmp_path_factory, start_checkpoint):
    cfg = job_config(tmp_path_factory.mktemp("runs"), synthetic_root, start_checkpoint, "run.name=faults",
                     "learner.num_ranks=1", f"learner.prompts_per_step={P}", f"rollout.sampling.group_size={G}",
                     "broadcast.timeout_s=12", "queue.claim_idle_ms=2000", f"learner.max_policy_lag={fault_lag(1)}")
    with started_job(cfg, redis_aof.url) as job:
        job.run(steps=1)
        yield job


def assert_nothing_lost_or_duplicated(job, row, dropped_before: set[str]):
    """The end-to-end count; the fault's row gets the records dropped (and counted) since ``dropped_before``."""
    acc = account(job)
    row.update(lost=len(acc.lost), duplicated=len(acc.duplicated), dropped=len(set(acc.dropped) - dropped_before))
    row["dropped_ids"] = sorted(set(acc.dropped) - dropped_before)
    assert acc.lost == [] and acc.duplicated == [], (acc.lost, acc.duplicated)
    assert acc.learned == len(job.learned_groups) * P * G
    return acc


def when_first_record(client, stream: str, after: bytes, act, from_actor: str | None = None) -> threading.Thread:
    """Run ``act()`` (in a thread) as soon as a record later than ``after`` appears in ``stream``
    (from rollout actor ``from_actor``, if given)."""
    from aurora_rl.records import decode

    def watch():
        last = after
        while True:
            reply = client.xread({stream: last}, block=100)
            for message_id, fields in (reply[0][1] if reply else []):
                last = message_id
                if from_actor is None or decode(fields[b"r"]).meta.get("actor") == from_actor:
                    return act()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def last_id(client, stream: str) -> bytes:
    newest = client.xrevrange(stream, count=1)
    return newest[0][0] if newest else b"0-0"


def test_rollout_actor_killed_mid_sample(job, redis_aof, fault_row):
    """SIGKILL as soon as the actor's first record of the step is in Redis: it is still inside its
    rollout call, its other records unpublished. Should the kill land after the call (a loaded
    machine), the death is met at the broadcast instead, and the test tries again."""
    import ray

    fault_row["fault"] = "rollout actor SIGKILLed mid-sample"
    dropped = set(account(job).dropped)
    client = redis_aof.client()
    replaced, resampled = job.faults["rollout_actors_replaced"], job.faults["groups_resampled"]
    for _ in range(3):
        victim = list(job.rollout.actors)[0]  # shard 0: two of the three prompts
        pid = ray.get(job.rollout.actors[victim].ready.remote())["pid"]
        killed = {}
        watcher = when_first_record(client, job.queue.rollout_stream, last_id(client, job.queue.rollout_stream),
                                    lambda: (os.kill(pid, signal.SIGKILL), killed.update(t=time.monotonic())),
                                    from_actor=victim)
        step, version = job.step, job.version
        job.run(steps=1)
        watcher.join(timeout=5)
        assert (job.step, job.version) == (step + 1, version + 1)
        assert victim not in job.rollout.actors and len(job.rollout.actors) == 2
        if job.faults["groups_resampled"] > resampled:
            break
    fault_row["recovery_s"] = round(time.monotonic() - killed["t"], 1)
    assert job.faults["groups_resampled"] >= resampled + 2  # the victim's two prompts, sampled again
    assert job.faults["rollout_actors_replaced"] >= replaced + 1
    assert any(f"rollout actor {victim} died" in line for line in job.lines)
    versions = {ray.get(a.ready.remote())["version"] for a in job.rollout.actors.values()}
    assert versions == {job.version}
    assert_actors_match_learner(job, [0, 1])  # the new actor samples with the learner's weights
    assert_nothing_lost_or_duplicated(job, fault_row, dropped)


def hold_until(learner, release: str, held: str, timeout_s: float) -> None:
    """Run in a learner rank (``__ray_call__``): keep it busy until the file ``release`` exists
    (``held`` is written once it is), so a broadcast asked of it meanwhile starts after."""
    Path(held).touch()
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_inside_receive(pid: int, timeout_s: float = 60.0) -> str:
    """The Python stack of process ``pid`` (py-spy) once it is inside ``BroadcastGroup.receive``."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    deadline = time.monotonic() + timeout_s
    while True:
        stack = subprocess.run([py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
        if re.search(r"\breceive \(.*aurora_rl/weight_sync\.py:\d+\)", stack.stdout):
            return stack.stdout
        assert time.monotonic() < deadline, f"{pid} never entered the broadcast: {stack.stdout}{stack.stderr}"
        time.sleep(0.2)


def test_broadcast_receiver_killed_during_the_broadcast(job, tmp_path, fault_row):
    """A rollout actor SIGKILLed inside ``BroadcastGroup.receive``, the broadcast in flight: every
    actor has been asked for the weights and waits for them. (Learner rank 0 is kept busy until
    the kill, so the transfer cannot end first.) The transfer fails for all, the dead actor is
    replaced, the group rebuilt and the weights sent again; every actor then samples with the
    learner's weights, and the next step loses and duplicates nothing."""
    import ray

    fault_row["fault"] = "broadcast receiver SIGKILLed during a broadcast (group rebuilt, sent again)"
    dropped = set(account(job).dropped)
    victim = sorted(job.rollout.actors)[0]
    pid = ray.get(job.rollout.actors[victim].ready.remote())["pid"]
    retries, replaced = job.faults["broadcast_retries"], job.faults["rollout_actors_replaced"]
    release, held = tmp_path / "release", tmp_path / "held"
    # in the rank's "weights" thread, where the broadcast runs: it starts only after the release
    busy = job.learners.sender.__ray_call__.options(concurrency_group="weights").remote(
        hold_until, str(release), str(held), 120.0)
    while not held.exists():
        time.sleep(0.05)
    outcome: dict = {}

    def broadcast():
        try:
            outcome["metrics"] = job.rollout.broadcast(job.version)  # what run() does after each learner step
        except Exception as e:  # kept for the assert: a thread's exception would go unseen
            outcome["error"] = e

    sending = threading.Thread(target=broadcast)
    sending.start()
    try:
        stack = wait_inside_receive(pid)
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
    finally:
        release.touch()
    ray.get(busy)
    sending.join(timeout=600)
    fault_row["recovery_s"] = round(time.monotonic() - t0, 1)
    receiving = "stage_weights" if job.rollout.staged else "receive_weights"
    assert receiving in stack  # killed inside the actor's call that receives the weights
    assert "metrics" in outcome, outcome
    assert job.faults["broadcast_retries"] == retries + 1
    assert job.faults["rollout_actors_replaced"] == replaced + 1
    assert any(f"dead receivers ['{victim}']" in line for line in job.lines), job.lines
    assert victim not in job.rollout.actors and len(job.rollout.actors) == 2
    assert {ray.get(a.ready.remote())["version"] for a in job.rollout.actors.values()} == {job.version}
    assert_actors_match_learner(job, [2, 3])
    job.run(steps=1)
    assert_nothing_lost_or_duplicated(job, fault_row, dropped)


def test_redis_killed_and_restarted_with_its_append_only_file(job, redis_aof, ray_node, fault_row, caplog):
    """Two outages in one step: as it begins (the driver and the reward workers meet it) and while
    the rollout actors publish (the actor with two prompts publishes after the other's first record)."""
    from aurora_rl.services.redis_client import connect_redis

    fault_row["fault"] = "Redis SIGKILLed and restarted (AOF), twice in a step"
    caplog.set_level(logging.WARNING)
    before = account(job)
    watcher_client = connect_redis(redis_aof.url, name="fault watcher")
    watch_from = last_id(watcher_client, job.queue.rollout_stream)
    one_prompt_actor = list(job.rollout.actors)[1]
    step = job.step

    def outage(seconds: float) -> None:
        redis_aof.crash()
        time.sleep(seconds)
        redis_aof.start()

    redis_aof.crash()
    t0 = time.monotonic()
    threading.Timer(2.0, redis_aof.start).start()
    watcher = when_first_record(watcher_client, job.queue.rollout_stream, watch_from, lambda: outage(2.0),
                                from_actor=one_prompt_actor)
    job.run(steps=1)
    fault_row["recovery_s"] = round(time.monotonic() - t0, 1)
    watcher.join(timeout=30)
    assert job.step == step + 1
    assert "redis client grpo driver: redis unavailable" in caplog.text
    assert "redis client grpo driver: redis reachable again" in caplog.text
    logs = "".join(p.read_text(errors="replace") for p in (job.run_dir / "logs").glob("*.log"))  # the workers' own
    assert "reward scorer scorer-" in logs and "reachable again" in logs  # the consumers said so
    assert "redis client rollout actor" in logs  # and a producer that published into the outage
    assert job.users.remade >= 1 and job.users.missing() == []  # its role users made again after each restart
    acc = assert_nothing_lost_or_duplicated(job, fault_row, set(before.dropped))
    # a retried XADD whose first try did land publishes a record twice: it is scored once
    fault_row["dropped"] += acc.published_twice - before.published_twice


def test_non_finite_loss_skips_the_step_counted(job, fault_row):
    """A weight of the learner turned NaN (a numerical blow-up): the step is skipped on every rank,
    no weight changes, nothing is broadcast, the records are dropped and counted; the job goes on."""
    import ray

    fault_row["fault"] = "non-finite loss (step skipped)"
    dropped = set(account(job).dropped)
    learner = job.learners.ranks[0]
    before = {n: t.clone() for n, t in ray.get(learner.trainable_state.remote()).items()}
    step, version = job.step, job.version
    skipped, nan_dropped = job.faults["nan_steps_skipped"], job.collector.counters["nan_dropped"]

    def set_norm_weight(rank, value):
        import torch

        name, p = next((n, p) for n, p in rank.engine.module.named_parameters() if n.endswith("model.norm.weight"))
        with torch.no_grad():
            old = float(p.view(-1)[0])
            p.view(-1)[0] = value
        return old

    old = ray.get(learner.__ray_call__.remote(set_norm_weight, float("nan")))
    job.run(steps=1)
    assert (job.step, job.version) == (step + 1, version)  # a step passed, no update
    assert job.faults["nan_steps_skipped"] == skipped + 1
    assert job.collector.counters["nan_dropped"] == nan_dropped + P * G
    assert any("skipped: non-finite loss" in line for line in job.lines)
    ray.get(learner.__ray_call__.remote(set_norm_weight, old))
    after = ray.get(learner.trainable_state.remote())
    assert all(bool((after[n] == t).all()) for n, t in before.items())  # no weight changed
    assert_actors_match_learner(job, [0])  # and the actors never got the NaN weights
    job.run(steps=1)
    assert job.version == version + 1
    assert_nothing_lost_or_duplicated(job, fault_row, dropped)
    assert fault_row["dropped"] == P * G, fault_row["dropped_ids"]

def test_reward_worker_killed_is_replaced_before_the_next_step(job, fault_row):
    """A reward worker SIGKILLed between steps: its scoring loop ends, the reward pool starts a new
    worker in its bundle before the next step, and the step is scored and learned as any other."""
    import ray

    fault_row["fault"] = "reward worker dies (replaced)"
    dropped = set(account(job).dropped)
    replaced = job.faults["reward_workers_replaced"]
    victim, run = job.rewards.workers[0], job.rewards.runs[0]
    os.kill(pid_of(victim), signal.SIGKILL)
    t0 = time.monotonic()
    ray.wait([run], timeout=60)  # Ray has seen the death
    step = job.step
    job.run(steps=1)
    fault_row["recovery_s"] = round(time.monotonic() - t0, 1)
    assert job.step == step + 1
    assert job.faults["reward_workers_replaced"] == replaced + 1
    assert job.rewards.workers[0] is not victim and any("reward worker 0 died" in line for line in job.lines)
    assert len(job.rewards.workers) == 2 and not ray.wait(job.rewards.runs, timeout=0)[0]  # both loops running
    assert_nothing_lost_or_duplicated(job, fault_row, dropped)


def kill_reward_workers(job) -> list:
    """SIGKILL every reward worker; their scoring loops' refs."""
    runs = list(job.rewards.runs)
    for worker in job.rewards.workers:
        os.kill(pid_of(worker), signal.SIGKILL)
    return runs


def test_every_reward_worker_killed_while_the_step_waits_for_scores(job, fault_row):
    """All reward workers SIGKILLed once the step's first rollout record is in the stream: the job
    looks at them while it waits for scores, replaces both, and the new ones reclaim what the dead
    held; the step is learned with nothing lost or learned twice. The workers are stopped (SIGSTOP)
    before the step, so that none scores a record before it dies: their blocked reads may still take
    records into their pending lists, and the step cannot end without the job seeing the deaths."""
    fault_row["fault"] = "every reward worker dies mid-step (replaced while the step waits)"
    client = job.redis
    dropped = set(account(job).dropped)
    replaced, step = job.faults["reward_workers_replaced"], job.step
    before = client.xlen(job.queue.rollout_stream)
    runs, pids = list(job.rewards.runs), [pid_of(worker) for worker in job.rewards.workers]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    killed: list = []

    def kill_when_sampling_starts():
        deadline = time.monotonic() + 120
        while client.xlen(job.queue.rollout_stream) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed.extend(runs)

    killer = threading.Thread(target=kill_when_sampling_starts)
    killer.start()
    t0 = time.monotonic()
    job.run(steps=1)
    killer.join()
    fault_row["recovery_s"] = round(time.monotonic() - t0, 1)
    assert len(killed) == 2 and job.step == step + 1
    assert job.faults["reward_workers_replaced"] == replaced + 2
    assert sum("reward worker" in line and "died" in line for line in job.lines) >= 2
    assert_nothing_lost_or_duplicated(job, fault_row, dropped)


def test_reward_workers_that_keep_dying_stop_the_job_naming_the_limit(job, fault_row):
    """Beyond ``reward.max_worker_deaths`` replacements the job stops with ``RewardWorkersFailing``
    (workers that keep dying point at a cause that a new worker will not fix). Last in the module:
    the job does not go on."""
    import dataclasses

    import ray

    from learner.reward_pool import RewardWorkersFailing

    fault_row["fault"] = "reward workers keep dying (the job gives up, naming the limit)"
    pool, step = job.rewards, job.step
    limit = pool.deaths  # the deaths so far are allowed; one more is not
    pool.cfg = dataclasses.replace(pool.cfg, reward=dataclasses.replace(pool.cfg.reward, max_worker_deaths=limit))
    ray.wait(kill_reward_workers(job), num_returns=len(pool.runs), timeout=60)
    with pytest.raises(RewardWorkersFailing, match=f"{limit + 1} reward workers lost, more than "
                                                   f"reward.max_worker_deaths={limit}"):
        job.run(steps=1)
    assert job.step == step  # stopped before sampling: no step half-done
    acc = account(job)  # what earlier steps sampled, scored and learned: still whole
    fault_row.update(lost=len(acc.lost), duplicated=len(acc.duplicated))
    assert acc.lost == [] and acc.duplicated == [], (acc.lost, acc.duplicated)
