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


@dataclass
class CallOptions:
    """How one step's rollout calls ask for weights and how long they may take."""

    version: Optional[int] = None  # synchronous job: the exact version to sample with
    min_version: Optional[int] = None  # asynchronous job: apply staged weights at least this new first
    wait_s: float = 120.0  # ... waiting at most this long for them
    epoch: int = 0  # the driver's rollback count (RolloutPool.rollback)
    max_prompts: Optional[int] = None  # the most prompts one actor puts in one generate + [SEG] pass
    timeout_s: Optional[float] = None  # a call unanswered this long is a named error (Stalled)

    def asked(self) -> str:
        """The version the calls ask for, as an error names it."""
        return str(self.version) if self.version is not None else f">= {self.min_version}"

    def call(self, actor, shard: "Shard") -> object:
        return actor.rollout.remote(shard.wire(), shard.seed, self.version, self.max_prompts, self.min_version,
                                    self.wait_s, self.epoch)


class StepSampling:
    """One step's prompts being sampled: ``start`` sends the calls, ``finish`` waits for them and
    samples again what dead actors lost. An asynchronous job starts the next steps' sampling
    before it finishes this one's (calls queue on each actor in order)."""

    def __init__(self, actors: Callable[[], dict], prompts: list[tuple[int, str]], seed: int, options: CallOptions,
                 replace_dead: Callable[[list[str]], None], log: Callable[[str], None] = print,
                 expect: Callable[[list[str]], None] = lambda group_ids: None):
        """``expect`` is told the group ids of every call sent (the collector keeps their records)."""
        self.actors, self.prompts, self.options = actors, prompts, options
        self.replace_dead, self.log, self.expect = replace_dead, log, expect
        self.wire = {gid: gid for _, gid in prompts}
        self.out = StepSample(group_ids=[])
        self.shards = shards_for(prompts, len(actors()), seed)
        self.calls: list[tuple[str, Shard]] = []
        self.refs: list = []
        self.result: Optional[StepSample] = None

    def start(self) -> "StepSampling":
        pool = self.actors()
        ids = list(pool)
        self.calls = [(ids[k % len(ids)], s) for k, s in enumerate(self.shards)]
        self.expect([gid for s in self.shards for _, gid in s.wire()])
        self.refs = [self.options.call(pool[a], s) for a, s in self.calls]
        return self

    def finish(self) -> StepSample:
        """Every prompt's groups sampled (or given up after ``MAX_ATTEMPTS``, or failed to load);
        waits once, then returns the same result."""
        if self.result is not None:
            return self.result
        out = self.out
        for attempt in range(MAX_ATTEMPTS):
            outcomes = gather(self.refs, self.options.timeout_s, names=[a for a, _ in self.calls],
                              what=f"rollout calls at policy version {self.options.asked()}")
            lost, dead = [], set()
            for (actor_id, shard), o in zip(self.calls, outcomes):
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
            self.log(f"[grpo] rollout actors {sorted(dead)} died while sampling {len(out.abandoned)} groups; "
                     "replacing them and sampling those prompts again")
            in_pool = sorted(dead & set(self.actors()))  # an actor removed by scaling is not replaced
            if in_pool:
                self.replace_dead(in_pool)
            self.shards = [Shard([p], s.seed, attempt + 1) for s in lost for p in s.prompts]
            self.wire.update({gid: wire_group_id(gid, attempt + 1) for s in lost for _, gid in s.prompts})
            self.start()
        else:
            out.given_up = [gid for s in self.shards for _, gid in s.prompts]
            self.log(f"[grpo] giving up groups {out.given_up}: their actors died {MAX_ATTEMPTS} times")
        skip = {g for _, g, _ in out.failed} | {self.wire[g] for g in out.given_up}
        out.group_ids = [self.wire[gid] for _, gid in self.prompts if self.wire[gid] not in skip]
        self.result = out
        return out


def sample_step(actors: Callable[[], dict], prompts: list[tuple[int, str]], seed: int, version: int,
                replace_dead: Callable[[list[str]], None], max_prompts: Optional[int] = None,
                log: Callable[[str], None] = print) -> StepSample:
    """Sample ``prompts`` (dataset index, group id) at policy ``version`` and wait for them.

    Args:
        actors: returns the current {actor id: handle} (``replace_dead`` changes it).
        seed: the step's seed; shard i samples with ``seed + i``.
        replace_dead: replaces the given dead actors and brings every actor to ``version``.
        max_prompts: the most prompts one actor puts in one generate + [SEG] pass (memory bound).
    """
    options = CallOptions(version=version, max_prompts=max_prompts)
    return StepSampling(actors, prompts, seed, options, replace_dead, log).start().finish()
