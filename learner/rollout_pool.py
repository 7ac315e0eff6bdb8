"""The GRPO job's rollout actors and the weight-broadcast group they form with learner rank 0.

    create / replace   actors started together (one placement group each); a dead one's
                       placement is given back and a new actor takes its place
    scale / autoscale  actors added or removed between steps (``aurora-rl scale``, or the
                       autoscaling rule on the queued prompts); the group is then rebuilt
    broadcast          the current weights to every actor. A member that dies fails the transfer
                       for all (frames carry the version, so nobody applies a torn one); the dead
                       are replaced, the group rebuilt and the weights sent again, until every
                       actor holds the version. Learner rank 0 dying raises ``LearnerLost``.
    start / settle     an asynchronous job's broadcast (``learner.max_policy_lag >= 1``): rank 0
                       sends a copy of the new weights while the next step trains, the actors
                       stage it while they sample and apply it before their next call; the
                       driver settles it (its time, a failure handled as above) a step later.

What it survives is counted in the job's ``faults`` (``rollout_actors_replaced``,
``broadcast_retries``; docs/RELIABILITY.md).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from aurora_rl.config.schema import DataConfig, GRPOConfig
from aurora_rl.services.library_logs import worker_log
from learner.actor_calls import alive, gather, results
from learner.learner_group import LearnerGroup, LearnerLost, rank_names
from learner.placement import JobPlacement, PlacementTimeout, wanted_rollout_actors

BROADCAST_ATTEMPTS = 3


class RolloutPool:
    def __init__(self, cfg: GRPOConfig, checkpoint: str, data: DataConfig, redis_url: str, rollout_stream: str,
                 run_dir: Path, placement: JobPlacement, learners: LearnerGroup, faults: dict[str, int],
                 log: Callable[[str], None]):
        self.cfg = cfg
        self.checkpoint = checkpoint
        self.data = data
        self.redis_url = redis_url
        self.rollout_stream = rollout_stream
        self.run_dir = run_dir
        self.placement = placement
        self.learners = learners
        self.faults = faults
        self.log = log
        self.actors: dict[str, object] = {}
        self.buckets: Optional[list] = None  # the broadcast's flat buckets, planned from the learner's weights
        self.cap: Optional[int] = None  # the last count asked for with `aurora-rl scale`: caps the autoscaler
        self.next_id = 0
        # asynchronous job: weights travel as copies and are staged by the actors (actors/rollout_actor.py)
        self.staged = cfg.learner.max_policy_lag > 0
        self.generation = 0  # broadcast groups built so far: a pending broadcast of an older one is moot
        self.epoch = 0  # learner rollbacks so far (``rollback``)
        self.before_change: Callable[[], None] = lambda: None  # the job's: let what runs on the actors finish

    # ------------------------------------------------------------------ actors
    def launch(self, count: int) -> tuple[list, Optional[PlacementTimeout]]:
        """Place and launch up to ``count`` actors without waiting for their engines: (actor id,
        handle) pairs, and the placement timeout that stopped the launching, if one did."""
        from actors.rollout_actor import RolloutActor

        launched = []
        for _ in range(count):
            actor_id = f"rollout-{self.next_id}"
            try:
                (options,) = self.placement.reserve(actor_id, "rollout", 1)
            except PlacementTimeout as e:
                return launched, e
            self.next_id += 1
            launched.append((actor_id, RolloutActor.options(**options).remote(
                actor_id, self.checkpoint, str(self.run_dir / "actors" / actor_id), self.data, self.cfg.rollout,
                self.redis_url, self.rollout_stream, self.cfg.reward.mask_threshold,
                self.cfg.run.seed + 1000 * self.next_id, str(worker_log(self.run_dir, actor_id)),
                options["num_gpus"])))
        return launched, None

    def await_ready(self, launched: list) -> list[str]:
        """Wait until every launched actor's engine is loaded and add it to the pool; one that failed
        to start gives its placement back, and the first such error is raised after the others are in."""
        outcomes = gather([actor.ready.remote() for _, actor in launched], self.cfg.rollout.start_timeout_s,
                          names=[actor_id for actor_id, _ in launched], what="the start of rollout actors")
        for (actor_id, actor), outcome in zip(launched, outcomes):
            if outcome.ok:
                self.actors[actor_id] = actor
            else:
                self.placement.release(actor_id)
        failed = next((o.error for o in outcomes if not o.ok), None)
        if failed is not None:
            raise failed
        return [actor_id for actor_id, _ in launched]

    def create(self, count: int) -> list[str]:
        """``count`` new actors, started together; their ids, once every one is ready.

        Raises ``PlacementTimeout`` when a placement timed out: the actors placed before it are
        started and kept first.
        """
        launched, timeout = self.launch(count)
        ids = self.await_ready(launched)
        if timeout is not None:
            raise timeout
        return ids

    def replace(self, dead: list[str]) -> None:
        """New actors in place of the dead ones (the caller rebuilds the broadcast group)."""
        import ray

        for actor_id in dead:
            ray.kill(self.actors.pop(actor_id))
            self.placement.release(actor_id)
        for actor_id, new in zip(dead, self.create(len(dead))):
            self.faults["rollout_actors_replaced"] += 1
            self.log(f"[grpo] rollout actor {actor_id} died; {new} takes its place")

    def replace_and_sync(self, dead: list[str], version: int) -> None:
        """``replace``, then every actor (the new ones first of all) gets weights ``version``."""
        self.replace(dead)
        self.broadcast(version, rebuild=True)

    def scale(self, count: int, version: int) -> bool:
        """Add or remove actors (between steps; nothing in flight is lost); whether the pool changed."""
        import ray

        if count < 1:
            raise ValueError("at least one rollout actor is needed")
        if count != len(self.actors):
            self.before_change()
        changed = False
        if count > len(self.actors):
            self.placement.request_rollout(count)  # on an autoscaling cluster: launch rollout nodes for them
            before = len(self.actors)
            try:
                self.create(count - before)
            except PlacementTimeout as e:
                self.log(f"[grpo] scaling to {count} rollout actors stopped at {len(self.actors)}: {e}")
            changed = len(self.actors) > before
        while len(self.actors) > count:
            actor_id = sorted(self.actors, key=lambda a: int(a.split("-")[1]))[-1]
            actor = self.actors.pop(actor_id)
            results([actor.leave_broadcast.remote()], self.weights_bound_s, [actor_id], "leaving the broadcast group")
            ray.kill(actor)
            self.placement.release(actor_id)  # frees its node for the autoscaler to retire
            changed = True
        if changed:
            self.broadcast(version, rebuild=True)
            self.log(f"[grpo] rollout actors now {sorted(self.actors)} at version {version}")
        return changed

    def autoscale(self, queued_prompts: int, version: int) -> bool:
        """Past the autoscaling threshold: a standing autoscaler request for the wanted rollout
        bundles, and new actors for the bundles that fit now (nodes the autoscaler adds are used
        later). A count set with ``aurora-rl scale`` caps it: a pool scaled down stays down."""
        have = len(self.actors)
        rule = self.cfg.placement.autoscale
        if self.cap is not None:
            rule = dataclasses.replace(rule, max_actors=min(rule.max_actors, self.cap))
        wanted = wanted_rollout_actors(queued_prompts, have, rule)
        if wanted <= have:
            return False
        self.placement.request_rollout(wanted)
        room = self.placement.rollout_room()
        return bool(room) and self.scale(have + min(room, wanted - have), version)

    def nodes(self) -> dict[str, str]:
        """Each actor's node id."""
        return {actor_id: self.placement.nodes(actor_id)[0] for actor_id in self.actors}

    # ------------------------------------------------------------------ weights
    def broadcast(self, version: int, rebuild: bool = False) -> dict:
        """Weights ``version`` from learner rank 0 to every actor; with ``rebuild``, first a new
        group over rank 0 and the current actors. Returns transfer metrics. On return every actor
        holds (staged: has received) exactly ``version``."""
        for _ in range(BROADCAST_ATTEMPTS):
            outcomes = self._join() if rebuild else []
            if all(o.ok for o in outcomes):
                outcomes = gather(self._send(version), self.weights_bound_s, names=self._members(),
                                  what=f"the broadcast of policy version {version}")
                if all(o.ok for o in outcomes):
                    return _transfer_metrics(outcomes)
            self._recover(version, outcomes)
            rebuild = True
        raise RuntimeError(f"the broadcast of version {version} failed {BROADCAST_ATTEMPTS} times")

    def start(self, version: int) -> "PendingBroadcast":
        """Send ``version`` without waiting (staged mode): the actors stage it while they sample."""
        return PendingBroadcast(version, self.generation, self._send(version), self._members(), time.monotonic())

    def settle(self, pending: "PendingBroadcast", version: int) -> dict:
        """Wait for a started broadcast; when it failed, bring every actor to ``version`` (the
        current one) as ``broadcast`` would. Transfer metrics, with the seconds waited here."""
        t0 = time.monotonic()
        outcomes = gather(pending.refs, self.weights_bound_s, names=pending.names,
                          what=f"the broadcast of policy version {pending.version}")
        waited = time.monotonic() - t0
        if all(o.ok for o in outcomes):
            return {**_transfer_metrics(outcomes), "broadcast_wait_s": waited}
        if pending.generation == self.generation:  # not yet made good by a rebuild since
            self._recover(pending.version, outcomes)
            return {**self.broadcast(version, rebuild=True), "broadcast_wait_s": time.monotonic() - t0}
        return {"broadcast_gb_per_s": 0.0, "broadcast_s": 0.0, "apply_s": 0.0, "broadcast_wait_s": waited}

    def rollback(self) -> None:
        """The learner went back to a checkpoint: every actor's calls made before give up waiting
        for weights, and each waits for the version sent next."""
        self.epoch += 1
        gather([a.rollback.remote(self.epoch) for a in self.actors.values()], self.weights_bound_s,
               names=list(self.actors), what="the rollback of the rollout actors")

    @property
    def weights_bound_s(self) -> float:
        """How long a broadcast, a rebuild of its group, or an actor's wait for staged weights may
        take before it is an error (gloo's own timeout, twice, and some)."""
        return 2 * self.cfg.broadcast.timeout_s + 30

    def _members(self) -> list[str]:
        return [*rank_names(1), *self.actors]

    def _send(self, version: int) -> list:
        """The calls of one broadcast, sender first."""
        sender = self.learners.sender
        if not self.staged:
            return ([sender.broadcast_weights.remote(version)]
                    + [a.receive_weights.remote(version) for a in self.actors.values()])
        copy = sender.snapshot_weights.remote(version)  # between steps: the copy the broadcast sends
        return ([sender.broadcast_weights.remote(version, copy)]
                + [a.stage_weights.remote(version) for a in self.actors.values()])

    def _recover(self, version: int, outcomes: list) -> None:
        """A broadcast (or the group's rebuild) failed: ``LearnerLost`` if rank 0 died, else the
        dead actors are replaced (the caller rebuilds the group and sends again)."""
        if not alive(self.learners.sender, name=rank_names(1)[0]):
            raise LearnerLost(f"learner rank 0 died during the broadcast of version {version}")
        dead = [actor_id for actor_id, a in self.actors.items() if not alive(a, name=actor_id)]
        error = next(o.error for o in outcomes if not o.ok)
        self.faults["broadcast_retries"] += 1
        self.log(f"[grpo] broadcast of version {version} failed ({type(error).__name__}); dead receivers "
                 f"{dead}; no actor applied a partial transfer. Rebuilding the group and sending again")
        self.replace(dead)

    def _join(self) -> list:
        """Every member leaves its old group and joins a new one; outcomes in member order."""
        sender = self.learners.sender
        members, names = [sender, *self.actors.values()], self._members()
        self.generation += 1
        left = gather([m.leave_broadcast.remote() for m in members], self.weights_bound_s, names=names,
                      what="leaving the broadcast group")
        if not all(o.ok for o in left):
            return left
        world, timeout, backend = len(members), self.cfg.broadcast.timeout_s, self.cfg.broadcast_backend
        (address,) = gather([sender.open_store.remote(world, timeout)], self.weights_bound_s, names=names[:1],
                            what="opening the broadcast group's store")
        if not address.ok:
            return [address]
        host, port, key_prefix = address.value
        return gather([sender.join_broadcast.remote(world, self.buckets, timeout)]
                      + [a.join_broadcast.remote(host, port, i, world, self.buckets, timeout, backend, key_prefix)
                         for i, a in enumerate(members[1:], start=1)], self.weights_bound_s, names=names,
                      what="joining the broadcast group")

    def kill(self) -> None:
        import ray

        for actor in self.actors.values():
            ray.kill(actor)
        self.actors = {}


@dataclass
class PendingBroadcast:
    version: int
    generation: int  # the group it was sent over
    refs: list  # the sender's call, then each actor's
    names: list[str]
    started: float


def _transfer_metrics(outcomes: list) -> dict:
    sent, *received = (o.value for o in outcomes)
    return {"broadcast_gb_per_s": sent["gb_per_s"], "broadcast_s": sent["seconds"],
            "apply_s": max((r["apply_s"] for r in received), default=0.0)}
