"""``aurora-rl preflight CONFIG [key.sub=value ...]``: a GRPO job's cluster checked before the run."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("preflight", help="before a long GRPO job: start every role as the run would, form the "
                                         "broadcast group, take one step of every role, report memory per device")
    p.add_argument("config", help="a grpo config (configs/*/grpo.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    p.add_argument("--out", default=None, help="also write the table (markdown) here")
    p.set_defaults(handler=run_preflight)


def run_preflight(args) -> int:
    from pathlib import Path

    from aurora_rl.config import load_config
    from aurora_rl.services import run_services
    from learner.preflight import preflight_grpo, table

    cfg = load_config(args.config, args.overrides, expect="grpo")
    with run_services(cfg.services, need_redis=True) as services:
        checks = preflight_grpo(cfg, services.redis_url)
    text = table(checks)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    failed = [c.what for c in checks if not c.ok]
    print(f"[preflight] {'everything fits' if not failed else 'will not run: ' + '; '.join(failed)}")
    return 1 if failed else 0
