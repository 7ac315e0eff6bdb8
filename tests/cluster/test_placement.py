"""Placement of the GRPO roles: bundle and autoscaling decisions (pure), config errors that name
the key, and placement groups on a real (one-machine, CPU-only) Ray node."""

from __future__ import annotations

import time

import pytest

from aurora_rl.config import ConfigError, load_config
from aurora_rl.config.placement import AutoscaleConfig, PlacementConfig, RolePlacement
from learner.placement import (
    JobPlacement,
    PlacementTimeout,
    bundles_that_fit,
    cluster_is_typed,
    role_bundle,
    wanted_rollout_actors,
)
from tests.config.test_config_loading import CONFIGS


def test_bundle_asks_for_the_role_resource_only_on_a_typed_cluster():
    role = RolePlacement(resource="rollout_gpu", amount=1, cpus=4, gpus=1)
    assert role_bundle(role, typed=True) == {"CPU": 4, "GPU": 1, "rollout_gpu": 1}
    assert role_bundle(role, typed=False) == {"CPU": 4, "GPU": 1}
    assert role_bundle(RolePlacement(resource="reward_cpu", cpus=0), typed=True) == {"reward_cpu": 1}


def test_auto_mode_is_typed_when_any_role_resource_exists():
    cfg = PlacementConfig()
    one_machine = {"CPU": 16.0, "memory": 1e10, "node:__internal_head__": 1.0}
    assert not cluster_is_typed(cfg, one_machine)
    # A fresh cluster.yaml cluster: only the head is up, with reward_cpu; GPU nodes are awaited.
    assert cluster_is_typed(cfg, {**one_machine, "reward_cpu": 8.0})
    assert cluster_is_typed(PlacementConfig(mode="typed"), one_machine)
    assert not cluster_is_typed(PlacementConfig(mode="cpu"), {**one_machine, "rollout_gpu": 4.0})


def test_bundles_that_fit_is_limited_by_the_scarcest_resource():
    bundle = {"CPU": 4, "GPU": 1, "rollout_gpu": 1}
    assert bundles_that_fit(bundle, {"CPU": 16, "GPU": 8, "rollout_gpu": 3}) == 3
    assert bundles_that_fit(bundle, {"CPU": 6, "GPU": 8, "rollout_gpu": 3}) == 1
    assert bundles_that_fit(bundle, {"CPU": 16, "GPU": 8}) == 0
    assert bundles_that_fit({"CPU": 1}, {"CPU": 2.9999999999}) == 3  # float residue of Ray's accounting


@pytest.mark.parametrize("queued, actors, rule, wanted", [
    (32, 4, AutoscaleConfig(enabled=False, max_prompts_per_actor=4, max_actors=8), 4),  # off
    (16, 4, AutoscaleConfig(enabled=True, max_prompts_per_actor=4, max_actors=8), 4),   # at the threshold
    (17, 4, AutoscaleConfig(enabled=True, max_prompts_per_actor=4, max_actors=8), 5),   # just past it
    (32, 4, AutoscaleConfig(enabled=True, max_prompts_per_actor=4, max_actors=8), 8),
    (64, 4, AutoscaleConfig(enabled=True, max_prompts_per_actor=4, max_actors=8), 8),   # capped
    (2, 6, AutoscaleConfig(enabled=True, max_prompts_per_actor=1, max_actors=8), 6),    # never shrinks
    (9, 10, AutoscaleConfig(enabled=True, max_prompts_per_actor=1, max_actors=8), 10),  # above the cap: kept
])
def test_wanted_rollout_actors(queued, actors, rule, wanted):
    assert wanted_rollout_actors(queued, actors, rule) == wanted


@pytest.mark.parametrize("override, key", [
    ("learner.use_gpu=true", "placement.learner.gpus"),
    ("placement.learner.gpus=1", "placement.learner.gpus"),
    ("placement.rollout.resource=GPU", "placement.rollout.resource"),
    ("placement.reward.cpus=0", "placement.reward.cpus"),
    ("placement.learner_strategy=TIGHT", "placement.learner_strategy"),
])
def test_bad_placement_names_the_key(override, key):
    extra = ["placement.reward.resource=null"] if "reward.cpus" in override else []
    with pytest.raises(ConfigError, match=rf"{key}:"):
        load_config(CONFIGS / "tiny" / "grpo.yaml", [override, *extra])


def test_autoscale_ceiling_below_the_start_count_is_refused():
    with pytest.raises(ConfigError, match="placement.autoscale.max_actors: 1 is below rollout.num_actors"):
        load_config(CONFIGS / "tiny" / "grpo.yaml", ["placement.autoscale.enabled=true",
                                                    "placement.autoscale.max_actors=1", "rollout.num_actors=2"])


def test_a_partial_override_keeps_the_role_resource():
    cfg = load_config(CONFIGS / "tiny" / "grpo.yaml", ["placement.rollout.cpus=2"])
    assert (cfg.placement.rollout.resource, cfg.placement.rollout.cpus) == ("rollout_gpu", 2.0)


def settled(read, still_s: float = 1.0, within_s: float = 30.0):
    """``read()`` once it has returned the same value for ``still_s`` (Ray reports the resources
    actors and placement groups free or take a moment after the call that does it)."""
    value, since, deadline = read(), time.monotonic(), time.monotonic() + within_s
    while time.monotonic() - since < still_s and time.monotonic() < deadline:
        time.sleep(0.1)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
    return value


def test_placement_groups_on_a_cpu_only_node(ray_node):
    """One machine: no role resource anywhere, so CPU bundles; actors run inside their bundles."""
    import ray

    @ray.remote
    class Probe:
        def where(self):
            ctx = ray.get_runtime_context()
            return ctx.get_node_id(), ctx.get_placement_group_id()

    placement = JobPlacement(PlacementConfig(ready_timeout_s=60), "test-placement")
    try:
        assert not placement.typed and placement.bundle("learner") == {"CPU": 1.0}
        room = settled(placement.rollout_room)  # the node is shared: an earlier test's actors may still be leaving
        ranks = placement.reserve("learner", "learner", 2, "PACK")
        (one,) = placement.reserve("rollout-0", "rollout", 1)
        assert settled(placement.rollout_room) == room - 3
        probes = [Probe.options(**o).remote() for o in (*ranks, one)]
        where = ray.get([p.where.remote() for p in probes])
        assert {w[1] for w in where[:2]} == {placement.groups["learner"].id.hex()}
        assert where[2][1] == placement.groups["rollout-0"].id.hex()
        assert placement.nodes("learner") == [where[0][0], where[1][0]]
        placement.request_rollout(3)  # no autoscaler on this node: accepted, changes nothing
        for p in probes:
            ray.kill(p)
        placement.release("rollout-0")
        assert "rollout-0" not in placement.groups
    finally:
        placement.release_all()
    assert placement.groups == {} and not placement.requested


def test_unplaceable_bundles_time_out_naming_the_role(ray_node):
    placement = JobPlacement(PlacementConfig(mode="typed", ready_timeout_s=2), "test-unplaceable")
    try:
        with pytest.raises(PlacementTimeout, match=r"placement.rollout: 1 x .*rollout_gpu"):
            placement.reserve("rollout-0", "rollout", 1)
        assert placement.groups == {}
    finally:
        placement.release_all()
