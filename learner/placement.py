"""Where the GRPO roles run: placement groups of per-role bundles on their node types.

    learner ranks   one placement group of K bundles  (placement.learner_strategy, PACK by default)
    reward workers  one placement group of M bundles  (placement.reward_strategy, SPREAD by default)
    rollout actors  one placement group of 1 bundle per actor, so each can be added or removed alone

A bundle is ``{"CPU": cpus, "GPU": gpus, <role resource>: amount}``. The role resources
(``rollout_gpu``, ``learner_gpu``, ``reward_cpu`` by default) are custom node resources that
cluster.yaml gives only to that role's node type, so Ray places each actor on its type. On one
machine nobody offers them: in mode ``auto`` the bundles then ask for CPUs (and GPUs) only.

The decisions are pure functions (``role_bundle``, ``cluster_is_typed``, ``bundles_that_fit``,
``wanted_rollout_actors``); ``JobPlacement`` is the thin Ray shell around them.
"""

from __future__ import annotations

import math

from aurora_rl.config.placement import AutoscaleConfig, PlacementConfig, RolePlacement

ROLES = ("rollout", "learner", "reward")


class PlacementTimeout(TimeoutError):
    """Bundles could not be placed in time (no node offers them, or the autoscaler is at its limit)."""


def role_bundle(role: RolePlacement, typed: bool) -> dict[str, float]:
    """The resources one actor of ``role`` reserves; the custom resource only on a typed cluster."""
    bundle = {"CPU": role.cpus, "GPU": role.gpus}
    if typed and role.resource:
        bundle[role.resource] = role.amount
    return {k: v for k, v in bundle.items() if v > 0}


def cluster_is_typed(cfg: PlacementConfig, resources: dict[str, float]) -> bool:
    """Whether bundles ask for the roles' custom resources, given the cluster's total resources.

    ``auto`` says yes as soon as any role's resource exists anywhere: on a cluster started from
    cluster.yaml the head offers ``reward_cpu`` even before a GPU node is up, so missing rollout
    or learner nodes are waited for (and launched by the autoscaler) instead of replaced by CPUs.
    """
    if cfg.mode != "auto":
        return cfg.mode == "typed"
    return any(getattr(cfg, role).resource in resources for role in ROLES if getattr(cfg, role).resource)


def bundles_that_fit(bundle: dict[str, float], available: dict[str, float]) -> int:
    """How many more copies of ``bundle`` the cluster's available resources hold (ignoring how
    they are split over nodes: an upper bound that the placement group then confirms)."""
    return min(int(available.get(k, 0.0) / v + 1e-9) for k, v in bundle.items())


def wanted_rollout_actors(queued_prompts: int, actors: int, cfg: AutoscaleConfig) -> int:
    """The rollout pool size the prompt queue asks for.

    Enough actors that none has more than ``max_prompts_per_actor`` queued prompts, never fewer
    than now (shrinking is a user's decision), never more than ``max_actors``.
    """
    if not cfg.enabled or queued_prompts <= cfg.max_prompts_per_actor * actors:
        return actors
    return max(actors, min(cfg.max_actors, math.ceil(queued_prompts / cfg.max_prompts_per_actor)))


def actor_options(bundle: dict[str, float], group, index: int) -> dict:
    """``ActorClass.options(...)`` keyword arguments that put an actor into bundle ``index`` of ``group``."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    custom = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
    return {"num_cpus": bundle.get("CPU", 0), "num_gpus": bundle.get("GPU", 0), "resources": custom,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)}


class JobPlacement:
    """The placement groups of one GRPO job, by key (``learner``, ``reward``, a rollout actor id)."""

    def __init__(self, cfg: PlacementConfig, prefix: str):
        import ray

        self.cfg = cfg
        self.prefix = prefix
        self.typed = cluster_is_typed(cfg, ray.cluster_resources())
        self.groups: dict = {}
        self.requested = False

    def bundle(self, role: str) -> dict[str, float]:
        return role_bundle(getattr(self.cfg, role), self.typed)

    def reserve(self, key: str, role: str, count: int, strategy: str = "PACK") -> list[dict]:
        """A placement group of ``count`` bundles of ``role``, ready; actor options per bundle."""
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group

        bundle = self.bundle(role)
        group = placement_group([bundle] * count, strategy=strategy, name=f"{self.prefix}:{key}")
        if not group.wait(timeout_seconds=self.cfg.ready_timeout_s):
            remove_placement_group(group)
            raise PlacementTimeout(
                f"placement.{role}: {count} x {bundle} ({strategy}) not placed within "
                f"{self.cfg.ready_timeout_s:.0f} s (placement.ready_timeout_s); the cluster offers "
                f"{ray.cluster_resources()}. On a cluster: does a node type offer these resources, "
                "and may the autoscaler add one (max_workers)?")
        self.groups[key] = group
        return [actor_options(bundle, group, i) for i in range(count)]

    def release(self, key: str) -> None:
        from ray.util.placement_group import remove_placement_group

        group = self.groups.pop(key, None)
        if group is not None:
            remove_placement_group(group)

    def release_all(self) -> None:
        for key in list(self.groups):
            self.release(key)
        if self.requested:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=[])
            self.requested = False

    def nodes(self, key: str) -> list[str]:
        """The node id of each bundle of ``key``'s group, in bundle order."""
        from ray.util.placement_group import placement_group_table

        table = placement_group_table(self.groups[key])["bundles_to_node_id"]
        return [table[i] for i in sorted(table)]

    def rollout_room(self) -> int:
        """How many more rollout bundles fit in the cluster's available resources now."""
        import ray

        return bundles_that_fit(self.bundle("rollout"), ray.available_resources())

    def request_rollout(self, count: int) -> None:
        """Ask the autoscaler for room for ``count`` rollout bundles in all (a standing request:
        it launches rollout nodes until they fit; without an autoscaler it changes nothing)."""
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[self.bundle("rollout")] * count)
        self.requested = True
