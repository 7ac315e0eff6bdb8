"""Sampling one step's prompts over the rollout actors, surviving actor deaths.

The step's prompts are cut into shards, one per actor (prompt j to shard j mod N), each with
its own sampling seed. A call whose actor died is lost as a whole: the driver replaces the
actor (``replace_dead``: a new actor, the broadcast group rebuilt, the current weights sent
before it samples) and samples the lost prompts again, one prompt per call spread over the
actors (a shard that killed its actor by its size is not sent whole again), with the same
seeds, under new group ids (``<group id>/r<attempt>``). Whatever the dead actor had already
published for the old ids is abandoned: the collector drops and counts it, so a group is never
learned twice, nor half from one attempt and half from another.

Prompts whose clip cannot be loaded come back from the actor as failures naming the file: their
groups are not waited for, and the driver counts and logs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from learner.actor_calls import gather

MAX_ATTEMPTS = 3  # sampling attempts per prompt before its group is given up (counted)


def step_prompts(seed: int, step: int, per_step: int, n_rows: int, attempt: str) -> list[tuple[int, str]]:
    """The ``per_step`` (dataset index, group id) pairs of ``step``: the split's rows in epochs,
    each a fresh permutation of the ``n_rows`` rows drawn from (seed, epoch)."""
    out = []
    for j in range(step * per_step, (step + 1) * per_step):
        epoch, pos = divmod(j, n_rows)
        order = np.random.default_rng([seed, epoch]).permutation(n_rows)
        out.append((int(order[pos]), f"{attempt}/s{step}/p{j - step * per_step}"))
    return out


def wire_group_id(group_id: str, attempt: int) -> str:
    """The group id records carry: the step's id on the first attempt, then ``<id>/r<attempt>``."""
    return group_id if attempt == 0 else f"{group_id}/r{attempt}"


@dataclass
class Shard:
    prompts: list[tuple[int, str]]  # (dataset index, the step's group id)
    seed: int
    attempt: int = 0

    def wire(self) -> list[tuple[int, str]]:
        return [(index, wire_group_id(gid, self.attempt)) for index, gid in self.prompts]


@dataclass
class StepSample:
    group_ids: list[str]  # the groups to collect (wire ids), in prompt order
    rollouts: list[dict] = field(default_factory=list)  # each finished call's counts and timings
    abandoned: list[str] = field(default_factory=list)  # wire ids of lost calls: never to be learned
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (index, group id, error) not loadable
    given_up: list[str] = field(default_factory=list)  # step group ids lost MAX_ATTEMPTS times
    replaced: list[str] = field(default_factory=list)  # ids of actors that died during the step


def shards_for(prompts: list[tuple[int, str]], n_actors: int, seed: int) -> list[Shard]:
    return [Shard(prompts[i::n_actors], seed + i) for i in range(n_actors) if prompts[i::n_actors]]


def sample_step(actors: Callable[[], dict], prompts: list[tuple[int, str]], seed: int, version: int,
                replace_dead: Callable[[list[str]], None], max_prompts: Optional[int] = None,
                log: Callable[[str], None] = print) -> StepSample:
    """Sample ``prompts`` (dataset index, group id) at policy ``version``.

    Args:
        actors: returns the current {actor id: handle} (``replace_dead`` changes it).
        seed: the step's seed; shard i samples with ``seed + i``.
        replace_dead: replaces the given dead actors and brings every actor to ``version``.
        max_prompts: the most prompts one actor puts in one generate + [SEG] pass (memory bound).
    """
    wire = {gid: gid for _, gid in prompts}
    out = StepSample(group_ids=[])
    shards = shards_for(prompts, len(actors()), seed)
    for attempt in range(MAX_ATTEMPTS):
        pool = actors()
        ids = list(pool)
        calls = [(ids[k % len(ids)], s) for k, s in enumerate(shards)]
        outcomes = gather([pool[a].rollout.remote(s.wire(), s.seed, version, max_prompts) for a, s in calls])
        lost, dead = [], set()
        for (actor_id, shard), o in zip(calls, outcomes):
            if o.ok:
                out.rollouts.append(o.value)
                out.failed += [tuple(f) for f in o.value["failed"]]
            elif o.died:
                lost.append(shard)
                dead.add(actor_id)
            else:
                raise o.error
        if not lost:
            break
        out.abandoned += [g for s in lost for _, g in s.wire()]
        out.replaced += sorted(dead)
        log(f"[grpo] rollout actors {sorted(dead)} died while sampling {len(out.abandoned)} groups at policy "
            f"version {version}; replacing them and sampling those prompts again")
        replace_dead(sorted(dead))
        shards = [Shard([p], s.seed, attempt + 1) for s in lost for p in s.prompts]
        wire.update({gid: wire_group_id(gid, attempt + 1) for s in lost for _, gid in s.prompts})
    else:
        out.given_up = [gid for s in shards for _, gid in s.prompts]
        log(f"[grpo] giving up groups {out.given_up}: their actors died {MAX_ATTEMPTS} times")
    skip = {g for _, g, _ in out.failed} | {wire[g] for g in out.given_up}
    out.group_ids = [wire[gid] for _, gid in prompts if wire[gid] not in skip]
    return out
