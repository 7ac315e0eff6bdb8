"""An asynchronous GRPO job (``learner.max_policy_lag = 1``) on CPU: vLLM rollout actors, reward
workers, a DeepSpeed learner, Redis.

The actors sample the next step while the learner trains this one; the weights travel as a copy
while the next step trains and are applied before an actor's next call. Checked in one running
job, in order: every record is learned once and no group is more than one version old while
actors are added and removed; an actor whose weights fall behind has its groups dropped as stale
and counted; a hung actor stops the job by name. (A checkpoint's steps in flight, sampled again
after a restore: tests/reliability/test_learner_faults.py.)
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from aurora_rl.records import decode
from learner.actor_calls import Stalled
from tests.grpo.test_grpo_job import assert_actors_match_learner, job_config, metrics_by_step, started_job
from tests.grpo.test_grpo_job import start_checkpoint  # noqa: F401  (a fixture, shared)
from tests.reliability.accounting import account

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
P, G = 3, 3


@pytest.fixture(scope="module")
def settings(ray_node, redis_server, synthetic_root, tmp_path_factory, start_checkpoint):
    return job_config(tmp_path_factory.mktemp("runs"), synthetic_root, start_checkpoint, "run.name=async",
                      "learner.max_policy_lag=1", "learner.num_ranks=1", f"learner.prompts_per_step={P}",
                      f"rollout.sampling.group_size={G}", "learner.checkpoint_every=1", "learner.steps=20",
                      "rollout.call_timeout_s=15")


@pytest.fixture(scope="module")
def job(settings, redis_server):
    with started_job(settings, redis_server.url) as job:
        yield job


def sampled_records(job) -> dict[str, list]:
    """The rollout stream's records by group id."""
    out: dict[str, list] = {}
    for _, fields in job.redis.xrange(job.queue.rollout_stream):
        r = decode(fields[b"r"])
        out.setdefault(r.group_id, []).append(r)
    return out


def test_actors_sample_the_next_step_while_the_learner_trains_and_every_record_is_learned_once(job):
    """Four steps, a third actor added before step 2 and removed before step 4: each step learns
    its groups once, sampled at most one version before the learner's, and the steps after the
    first were sampled a version behind (sampled while the step before them trained)."""
    job.run(steps=4, scale_plan={1: 3, 3: 2})
    assert (job.step, job.version) == (4, 4) and sorted(job.rollout.actors) == ["rollout-0", "rollout-1"]
    acc = account(job)
    assert acc.lost == [] and acc.duplicated == [] and acc.learned == 4 * P * G
    assert set(job.collector.counters.values()) == {0}
    records = sampled_records(job)
    lags = {step: sorted({step - 1 - records[gid][0].policy_version for gid in groups})
            for step, groups in job.learned_groups.items()}
    assert lags == {1: [0], 2: [1], 3: [1], 4: [1]}  # step 2 onwards: sampled while the step before trained
    assert any(r.meta["actor"] == "rollout-2" for group in records.values() for r in group)
    rows = metrics_by_step(job.run_dir)
    assert [rows[s]["policy_lag"] for s in (1, 2, 3, 4)] == [0.0, 1.0, 1.0, 1.0]
    assert [(rows[s]["groups_lag_0"], rows[s]["groups_lag_1"]) for s in (1, 2)] == [(1.0, 0.0), (0.0, 1.0)]
    assert np.isfinite(rows[1]["logprob_mismatch"]) and np.isnan(rows[2]["logprob_mismatch"])  # lag-0 tokens only
    assert all(0 < rows[s]["is_ess"] <= 1 + 1e-9 for s in rows)
    # the actors' masks against the learner's reach the metrics (step 1's completions hold [SEG]s)
    assert all(0.0 <= rows[1][key] <= 1.0 for key in ("mask_iou_sampled", "mask_iou_learner", "mask_agreement"))
    assert all(rows[s]["broadcast_s"] > 0 for s in (2, 3, 4))  # each step settles the broadcast sent during it
    assert_actors_match_learner(job, [0, 1])  # every actor ends holding the learner's final weights


def test_groups_sampled_more_than_k_versions_ago_are_dropped_whole_and_counted(job):
    """rollout-1 is made to keep the weights it holds (it stages new ones but never applies them):
    its group of the third step after is two versions old and is dropped, counted, not waited for."""
    import ray

    stuck = job.rollout.actors["rollout-1"]
    ray.get(stuck.__ray_call__.remote(lambda self: setattr(self, "_apply_staged", lambda *_: (0.0, 0.0))))
    held = ray.get(stuck.__ray_call__.remote(lambda self: self.engine.version))
    try:
        job.run(steps=3)
    finally:
        ray.get(stuck.__ray_call__.remote(lambda self: delattr(self, "_apply_staged")))
    assert (job.step, job.version) == (7, 7)
    stale = {gid for gid, why in job.collector.dropped_groups.items() if why == "stale_dropped"}
    records = sampled_records(job)
    assert len(stale) == 1 and all(r.meta["actor"] == "rollout-1" and r.policy_version == held
                                   for gid in stale for r in records[gid])
    assert job.collector.counters["stale_dropped"] == G and job.collector.counters["incomplete_groups"] == 0
    assert len(job.learned_groups[7]) == P - 1
    acc = account(job)
    assert acc.lost == [] and acc.duplicated == [] and acc.learned == (7 * P - 1) * G
    assert any("records dropped (counted) {'stale_dropped': 3}" in line for line in job.lines), job.lines


def test_a_hung_rollout_actor_stops_the_job_naming_it(job):
    """rollout-1 stopped (SIGSTOP): the step's wait for its call runs out and says who it waited for.
    Last in the module: the job does not go on."""
    import ray

    pid = ray.get(job.rollout.actors["rollout-1"].ready.remote())["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(Stalled, match=r"rollout calls .*no answer within 15 s from rollout-1$"):
            job.run(steps=2)
    finally:
        os.kill(pid, signal.SIGKILL)
