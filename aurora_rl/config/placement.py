"""Where a GRPO job's roles run: the ``placement:`` section of a GRPO config (docs/CLUSTER.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from aurora_rl.config.loader import field


@dataclass
class RolePlacement:
    """One actor's placement-group bundle. ``resource`` is a custom node resource that only this
    role's node type offers (cluster.yaml), so Ray can place the actor nowhere else; each actor
    takes ``amount`` of it, plus ``cpus`` and ``gpus``."""

    resource: Optional[str] = None
    amount: float = field(1.0, gt=0.0)
    cpus: float = field(1.0, ge=0.0)
    gpus: float = field(0.0, ge=0.0)

    def check(self):
        if self.resource in ("CPU", "GPU", "memory", "object_store_memory"):
            yield "resource", f"{self.resource!r} is a built-in resource: name a custom one (cpus / gpus set the rest)"
        if not self.resource and self.cpus == 0 and self.gpus == 0:
            yield "cpus", "a bundle needs at least one resource: cpus, gpus or a custom resource"


@dataclass
class RolloutPlacement(RolePlacement):
    resource: Optional[str] = "rollout_gpu"


@dataclass
class LearnerPlacement(RolePlacement):
    resource: Optional[str] = "learner_gpu"


@dataclass
class RewardPlacement(RolePlacement):
    resource: Optional[str] = "reward_cpu"


@dataclass
class AutoscaleConfig:
    """Grow the rollout pool while prompts queue up: when more than ``max_prompts_per_actor``
    prompts wait per rollout actor, the job asks the Ray autoscaler for rollout bundles and
    adds actors as they fit, up to ``max_actors``. It never shrinks the pool; ``aurora-rl scale --rollout N``
    does, and caps it at N from then on."""

    enabled: bool = False
    max_prompts_per_actor: int = field(4, ge=1)
    max_actors: int = field(8, ge=1)


@dataclass
class PlacementConfig:
    """Where the GRPO roles run (docs/CLUSTER.md). mode ``auto``: bundles ask for the roles'
    custom resources when the cluster offers any of them, else for CPUs only (one machine);
    ``typed`` always asks (waits for the autoscaler); ``cpu`` never does."""

    mode: Literal["auto", "typed", "cpu"] = "auto"
    rollout: RolloutPlacement = field(factory=RolloutPlacement)
    learner: LearnerPlacement = field(factory=LearnerPlacement)
    reward: RewardPlacement = field(factory=RewardPlacement)
    learner_strategy: Literal["PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD"] = "PACK"
    reward_strategy: Literal["PACK", "STRICT_PACK", "SPREAD", "STRICT_SPREAD"] = "SPREAD"
    ready_timeout_s: float = field(600.0, gt=0.0)  # wait this long for bundles (the autoscaler may be adding nodes)
    autoscale: AutoscaleConfig = field(factory=AutoscaleConfig)
