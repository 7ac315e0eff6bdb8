"""``aurora-rl cluster check`` (a launcher file, before ``ray up``) and ``aurora-rl cluster
node-resources`` (an on-prem host's ``ray start --resources``)."""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("cluster", help="Ray cluster-launcher files: dry check, on-prem node resources")
    cmds = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    check = cmds.add_parser("check", help="run ray up's config checks (no cloud access) and size the GRPO roles")
    check.add_argument("file", help="cluster.yaml or cluster-onprem.yaml")
    check.add_argument("--config", help="a GRPO config whose roles the cluster must hold (e.g. configs/real/grpo.yaml)")
    check.add_argument("--roles", help="on-prem: the roles file the hosts read (cluster/onprem_roles.yaml)")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="key.sub=value",
                       help="an override of --config (repeatable)")
    check.set_defaults(handler=check_cluster)
    res = cmds.add_parser("node-resources", help="this on-prem host's custom resources as JSON for ray start")
    res.add_argument("--roles", required=True, help="the roles file (resource name -> hosts)")
    res.add_argument("--gpus", type=int, required=True, help="GPUs of this host (one resource unit each)")
    res.add_argument("addresses", nargs="+", help="this host's addresses, e.g. $(hostname -I)")
    res.set_defaults(handler=print_node_resources)


def _read_roles(path: str) -> dict:
    from pathlib import Path

    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


def check_cluster(args) -> int:
    import sys

    from aurora_rl.launcher_config import LauncherConfigError, check_onprem_roles, ray_up_dry_check, role_capacity

    try:
        config = ray_up_dry_check(args.file)
    except LauncherConfigError as e:
        print(f"aurora-rl: {e}", file=sys.stderr)
        return 1
    types = ", ".join(f"{name} (min {t.get('min_workers', 0)}, max {t.get('max_workers', 0)})"
                      for name, t in config["available_node_types"].items())
    print(f"{args.file}: accepted by ray up's config checks; provider {config['provider']['type']}; node types: {types}")
    problems = []
    if args.roles:
        problems += check_onprem_roles(config, _read_roles(args.roles))
    if args.config:
        from aurora_rl.config import load_config

        grpo = load_config(args.config, args.overrides, expect="grpo")
        if config["provider"]["type"] == "local":
            print("on-prem: node resources come from the roles file at `ray start`; role sizes are not checked here")
        else:
            for row in role_capacity(config, grpo):
                where = ", ".join(f"{n} x{k}/node" for n, k in row.node_types.items()) or "no node type"
                scope = " on one node (STRICT_PACK)" if row.one_node else ""
                print(f"  {row.role}: {row.wanted} x {row.bundle}; {where}: room for {row.capacity}{scope}")
                if not row.fits:
                    problems.append(f"{row.role}: {args.config} wants {row.wanted} but the node types hold "
                                    f"{row.capacity}{scope}")
    for problem in problems:
        print(f"aurora-rl: {problem}", file=sys.stderr)
    return 1 if problems else 0


def print_node_resources(args) -> int:
    import json

    from aurora_rl.launcher_config import node_resources

    print(json.dumps(node_resources(_read_roles(args.roles), args.addresses, args.gpus)))
    return 0
