"""How the GRPO driver survives its workers dying (docs/RELIABILITY.md).

    rollout actor dies        ``replace_actors``: a new actor in its place, the broadcast group
                              rebuilt and the current weights sent before it samples; its prompts
                              are sampled again under new group ids (learner/rollout_dispatch.py)
    broadcast receiver dies   the transfer fails for every member and nobody applies it (frames
                              carry the version); ``broadcast`` replaces the dead, rebuilds the
                              group and sends again, until every actor holds the current version
    learner rank dies         ``LearnerLost``; ``restart_learners`` stops every rank, starts the
                              group again from the last checkpoint (step, policy version, counters)
                              and sends those weights out; the steps after the checkpoint are redone
                              under a new attempt id, whatever was collected for the lost step is
                              dropped and counted, never learned

These act on a ``GRPOJob`` (learner/grpo_job.py): its actors, learners and counters.
"""

from __future__ import annotations

import secrets

from learner.actor_calls import alive, gather

BROADCAST_ATTEMPTS = 3


class LearnerLost(RuntimeError):
    """A learner rank died: the DeepSpeed group is gone and must be started again."""


def train_step(job, payloads: list[list[bytes]], advantages: list[list[float]]) -> list[dict]:
    """One optimizer step on every learner rank; ``LearnerLost`` when a rank died during it."""
    outcomes = gather([lr.train_step.remote(p, a, job.step) for lr, p, a in zip(job.learners, payloads, advantages)])
    if all(o.ok for o in outcomes):
        return [o.value for o in outcomes]
    dead = [rank for rank, o in enumerate(outcomes) if o.died or not alive(job.learners[rank])]
    if dead:
        raise LearnerLost(f"learner ranks {dead} died during step {job.step + 1}")
    raise next(o.error for o in outcomes if not o.ok)


def replace_actors(job, dead: list[str]) -> None:
    """New rollout actors in place of the dead ones (the caller rebuilds the broadcast group)."""
    import ray

    for actor_id in dead:
        ray.kill(job.actors.pop(actor_id))
        job.placement.release(actor_id)
    for actor_id, new in zip(dead, job._create_actors(len(dead))):
        job.faults["rollout_actors_replaced"] += 1
        job.log(f"[grpo] rollout actor {actor_id} died; {new} takes its place")


def replace_dead_actors(job, dead: list[str]) -> None:
    """``replace_actors``, then every actor (the new ones first of all) gets the current weights."""
    replace_actors(job, dead)
    broadcast(job, rebuild=True)


def broadcast(job, rebuild: bool = False) -> dict:
    """The current weights (``job.version``) to every rollout actor; with ``rebuild``, first a new
    group over learner rank 0 and the current actors. Returns transfer metrics.

    A member that dies fails the transfer; it is repeated on a rebuilt group with the dead actors
    replaced, so on return every actor holds exactly ``job.version``. Learner rank 0 dying raises
    ``LearnerLost``.
    """
    for _ in range(BROADCAST_ATTEMPTS):
        outcomes = _join(job) if rebuild else []
        if all(o.ok for o in outcomes):
            refs = [job.learners[0].broadcast_weights.remote(job.version)]
            refs += [a.receive_weights.remote(job.version) for a in job.actors.values()]
            outcomes = gather(refs)
            if all(o.ok for o in outcomes):
                sent, *received = (o.value for o in outcomes)
                return {"broadcast_gb_per_s": sent["gb_per_s"], "broadcast_s": sent["seconds"],
                        "apply_s": max((r["apply_s"] for r in received), default=0.0)}
        if not alive(job.learners[0]):
            raise LearnerLost(f"learner rank 0 died during the broadcast of version {job.version}")
        dead = [actor_id for actor_id, a in job.actors.items() if not alive(a)]
        error = next(o.error for o in outcomes if not o.ok)
        job.faults["broadcast_retries"] += 1
        job.log(f"[grpo] broadcast of version {job.version} failed ({type(error).__name__}); dead receivers "
                f"{dead}; no actor applied a partial transfer. Rebuilding the group and sending again")
        replace_actors(job, dead)
        rebuild = True
    raise RuntimeError(f"the broadcast of version {job.version} failed {BROADCAST_ATTEMPTS} times")


def _join(job) -> list:
    """Every member leaves its old group and joins a new one; outcomes in member order."""
    members = [job.learners[0], *job.actors.values()]
    left = gather([m.leave_broadcast.remote() for m in members])
    if not all(o.ok for o in left):
        return left
    (address,) = gather([job.learners[0].free_address.remote()])
    if not address.ok:
        return [address]
    host, port = address.value
    world, timeout, buckets = len(members), job.cfg.broadcast.timeout_s, job.buckets
    return gather([job.learners[0].join_broadcast.remote(host, port, world, buckets, timeout)]
                  + [a.join_broadcast.remote(host, port, i, world, buckets, timeout)
                     for i, a in enumerate(members[1:], start=1)])


def restart_learners(job, reason: str) -> None:
    """Stop every learner rank, start the group again from the last checkpoint, send its weights."""
    import ray

    job.faults["learner_restarts"] += 1
    job.log(f"[grpo] {reason}: restarting the learner group from the last checkpoint")
    lost_step, lost_attempt = job.step, job.attempt
    for lr in job.learners:
        ray.kill(lr)
    job.learners = []
    job._start_learners()
    if (job.run_dir / "checkpoints" / "latest").exists():
        job._restore()
    else:
        job.step, job.version, job.counters = 0, 0, {"learned": 0}
        job.log("[grpo] no checkpoint yet: starting again from step 0")
    # The steps after the checkpoint are redone under a new attempt id (the reward workers'
    # exactly-once check must not take them for duplicates); their old groups are abandoned.
    job.attempt = secrets.token_hex(3)
    dropped = job.collector.abandon_step([f"{lost_attempt}/s{s}/" for s in range(job.step, lost_step + 1)])
    job.learned_groups = {s: g for s, g in job.learned_groups.items() if s <= job.step}
    job.log(f"[grpo] redoing steps {job.step + 1}..{lost_step + 1} ({dropped} collected records of the lost "
            "step dropped)")
    broadcast(job, rebuild=True)
