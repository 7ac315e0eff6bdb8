"""The learner group's faults, on an asynchronous job (``learner.max_policy_lag = 1``) with two
DeepSpeed ranks: a rank SIGKILLed mid-step (the job restarts the group from its last checkpoint,
samples again the step its checkpoint had in flight, and redoes the steps after it), and a
non-finite loss on one rank (every rank skips the step together; no weight changes)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from tests.grpo.test_grpo_job import job_config, started_job
from tests.reliability.accounting import account
from tests.reliability.conftest import fault_lag, pid_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
P, G, STEPS = 2, 3, 4


@pytest.fixture(scope="module")
def job(ray_node, redis_server, synthetic_root, tmp_path_factory, start_checkpoint):
    cfg = job_config(tmp_path_factory.mktemp("runs"), synthetic_root, start_checkpoint, "run.name=learner-faults",
                     "rollout.num_actors=1", f"learner.steps={STEPS}", "learner.checkpoint_every=2",
                     f"learner.prompts_per_step={P}", f"rollout.sampling.group_size={G}", "broadcast.timeout_s=30",
                     f"learner.max_policy_lag={fault_lag(1)}",
                     "learner.optim.lr=1e-4")  # small steps: completions keep their [SEG], losses stay informative
    with started_job(cfg, redis_server.url) as job:
        yield job


def scored_records(client, job) -> list:
    from aurora_rl.records import decode

    return [decode(fields[b"r"]) for _, fields in client.xrange(job.queue.scored_stream)]


def test_learner_killed_mid_step_resumes_from_the_last_checkpoint(job, redis_server, fault_row):
    fault_row["fault"] = "learner rank SIGKILLed mid-step (resumed from checkpoint)"
    client = redis_server.client()
    victim = pid_of(job.learners.ranks[1])
    killed = {}

    def kill_during_step_4():
        # The step's records are collected and not yet acknowledged: the learner is stepping on them.
        while not (job.step == 3 and client.xpending(job.queue.scored_stream, "learner")["pending"] >= P * G):
            time.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        killed["t"] = time.monotonic()

    watcher = threading.Thread(target=kill_during_step_4, daemon=True)
    watcher.start()
    job.run()
    fault_row["recovery_s"] = round(time.monotonic() - killed["t"], 1)
    assert (job.step, job.version) == (STEPS, STEPS)
    assert job.faults["learner_restarts"] == 1
    assert any("learner ranks [1] died during step 4" in line for line in job.lines), job.lines
    assert any("resumed at step 2, policy version 2" in line for line in job.lines)
    rows = [json.loads(line) for line in (job.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 3, 4]  # step 3 learned, rolled back, learned again
    if job.rollout.staged:
        # the checkpoint of step 2 was written while step 3 was being sampled (one step ahead): it
        # holds step 3's rows, and the restored job samples exactly those again (new ids, weights of
        # version 2)
        in_flight = json.loads((job.run_dir / "checkpoints" / "step_000002" / "job_state.json").read_text())
        assert any("steps [2] were in flight" in line for line in job.lines), job.lines
        redone = [r for r in scored_records(client, job) if r.group_id in set(job.learned_groups[3])]
        assert len(redone) == P * G and {r.policy_version for r in redone} == {2}
        assert sorted({r.meta["dataset_index"] for r in redone}) == sorted(set(in_flight["in_flight"]["2"]))
        assert all(r.group_id.startswith(job.attempt) for r in redone)
    else:  # synchronous: the same checkpoint and seed, the same step
        first, again = rows[2], rows[3]
        assert first["loss"] > 0.1 and first["mask_bce"] > 0  # a real step to compare, not an empty one
        for key in ("reward", "loss", "policy_loss", "mask_bce"):
            assert again[key] == pytest.approx(first[key], rel=1e-4, abs=1e-6), key
    acc = account(job)
    fault_row.update(lost=len(acc.lost), duplicated=len(acc.duplicated), dropped=len(acc.dropped))
    assert acc.lost == [] and acc.duplicated == [], (acc.lost, acc.duplicated)
    assert acc.learned == STEPS * P * G == job.counters["learned"]
    assert len(acc.dropped) >= P * G  # the rolled-back step 3 (and what step 4 had collected): dropped, counted


def test_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(job, redis_server):
    import ray

    from aurora_rl.records import decode

    job.run(steps=1)  # scored records to step on
    client = redis_server.client()
    records = [fields[b"r"] for _, fields in client.xrange(job.queue.scored_stream, count=2)]
    assert decode(records[0]).meta["dataset_index"] is not None
    before = [ray.get(lr.trainable_state.remote()) for lr in job.learners.ranks]
    stats = ray.get([job.learners.ranks[0].train_step.remote([records[0]], [float("nan")], 99),
                     job.learners.ranks[1].train_step.remote([records[1]], [1.0], 99)], timeout=300)
    assert [s["skipped"] for s in stats] == [1.0, 1.0]  # rank 1's loss was finite: it skips too
    assert np.isnan(stats[0]["loss"]) and np.isfinite(stats[1]["loss"])
    for rank, state in zip(job.learners.ranks, before):
        after = ray.get(rank.trainable_state.remote())
        assert all(bool((after[n] == t).all()) for n, t in state.items())
    stats = ray.get([job.learners.ranks[0].train_step.remote([records[0]], [1.0], 100),
                     job.learners.ranks[1].train_step.remote([records[1]], [-1.0], 100)], timeout=300)
    assert [s["skipped"] for s in stats] == [0.0, 0.0]  # the ranks still step together afterwards
    after = ray.get(job.learners.ranks[0].trainable_state.remote())
    assert any(not bool((after[n] == t).all()) for n, t in before[0].items())


def test_stop_with_a_dead_learner_rank_still_stops_every_worker(job):
    """Runs last in this module: it ends the job."""
    import ray

    workers = [*job.learners.ranks, *job.rollout.actors.values(), *job.rewards.workers]
    os.kill(pid_of(job.learners.ranks[1]), signal.SIGKILL)
    job.stop()  # no error from the dead rank's shutdown
    assert any("learner shutdown did not finish cleanly" in line for line in job.lines), job.lines
    for worker in workers:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(worker.__ray_call__.remote(lambda self: os.getpid()), timeout=60)
    assert (job.learners.ranks, job.rollout.actors, job.rewards.workers) == ([], {}, [])
