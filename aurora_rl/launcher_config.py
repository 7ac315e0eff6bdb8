"""Checks of a Ray cluster-launcher file (``cluster.yaml``) that need no cloud access.

``ray_up_dry_check``: what ``ray up FILE --no-config-cache`` does with the file before it
contacts a provider: Ray's ``prepare_config`` (provider defaults merged, node types filled
in) and ``validate_config`` (ray-schema.json and Ray's own consistency rules). For the local
(on-prem) provider the provider step touches nothing remote either, so there the whole of
``ray up``'s config bootstrap runs.

``role_capacity``: for each GRPO role, the node types offering its bundle and how many of the
role's actors they hold at their ``max_workers`` — the sizing mistakes ``ray up`` cannot see.

``node_resources``: an on-prem host's custom resources, from the roles file that lists which
hosts offer which resource (cluster/onprem_roles.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from aurora_rl.config.schema import GRPOConfig
from learner.placement import bundles_that_fit, role_bundle


class LauncherConfigError(ValueError):
    """The cluster file is rejected by Ray's checks or cannot hold the GRPO config's roles."""


def ray_up_dry_check(path: str | Path) -> dict:
    """The config ``ray up`` would use, or ``LauncherConfigError`` with Ray's reason."""
    import click
    import jsonschema
    from ray.autoscaler._private.commands import _bootstrap_config
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        config = yaml.safe_load(Path(path).read_text())
        if config.get("provider", {}).get("type") == "local":
            return _bootstrap_config(config, no_config_cache=True)
        prepared = prepare_config(config)
        validate_config(prepared)
        return prepared
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "<top>"
        raise LauncherConfigError(f"{path}: {where}: {e.message}") from None
    except (ValueError, KeyError, yaml.YAMLError, click.ClickException) as e:
        raise LauncherConfigError(f"{path}: {e}") from None


@dataclass
class RoleCapacity:
    role: str
    bundle: dict[str, float]
    wanted: int  # actors the GRPO config may run (autoscaling included)
    node_types: dict[str, int]  # node type -> actors one node of it holds
    capacity: int  # actors all nodes of those types hold at max_workers
    one_node: bool = False  # STRICT_PACK: every bundle on one node

    @property
    def fits(self) -> bool:
        return self.capacity >= self.wanted


def role_capacity(config: dict, grpo: GRPOConfig) -> list[RoleCapacity]:
    """How many actors of each role a prepared launcher config holds (node types' ``resources``
    are what Ray schedules by; CPU / GPU left out of them are auto-detected and not counted)."""
    p = grpo.placement
    typed = p.mode != "cpu"
    wanted = {"rollout": max(grpo.rollout.num_actors, p.autoscale.max_actors if p.autoscale.enabled else 0),
              "learner": grpo.learner.num_ranks, "reward": grpo.reward.num_workers}
    strict = {"learner": p.learner_strategy == "STRICT_PACK", "reward": p.reward_strategy == "STRICT_PACK",
              "rollout": False}
    out = []
    for role in ("rollout", "learner", "reward"):
        bundle = role_bundle(getattr(p, role), typed)
        per_type = {}
        for name, node_type in config["available_node_types"].items():
            resources = node_type.get("resources", {})
            known = {k: v for k, v in bundle.items() if k in resources or k not in ("CPU", "GPU")}
            fit = bundles_that_fit(known, resources) if known else 0
            if fit:
                per_type[name] = fit
        counts = {name: 1 if name == config["head_node_type"] else config["available_node_types"][name]["max_workers"]
                  for name in per_type}
        if strict[role]:
            capacity = max(per_type.values(), default=0)
        else:
            capacity = sum(per_type[name] * counts[name] for name in per_type)
        out.append(RoleCapacity(role, bundle, wanted[role], per_type, capacity, strict[role]))
    return out


def node_resources(roles: dict[str, list[str]], addresses: list[str], gpus: int) -> dict[str, int]:
    """The custom resources of the on-prem host with ``addresses``: every resource whose host
    list names one of them, one unit per GPU."""
    mine = {name: gpus for name, hosts in roles.items() if set(map(str, hosts)) & set(addresses)}
    if not mine:
        raise LauncherConfigError(f"none of this host's addresses {addresses} is listed in the roles file")
    return mine


def check_onprem_roles(config: dict, roles: dict[str, list[str]]) -> list[str]:
    """Problems between an on-prem launcher file's ``worker_ips`` and the roles file (empty: none)."""
    workers = set(map(str, config["provider"].get("worker_ips", [])))
    listed = {str(h): name for name, hosts in roles.items() for h in hosts}
    problems = [f"worker {ip} has no role in the roles file" for ip in sorted(workers - set(listed))]
    problems += [f"{ip} ({listed[ip]}) is not among provider.worker_ips" for ip in sorted(set(listed) - workers)]
    return problems
