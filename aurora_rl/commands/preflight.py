"""``aurora-rl preflight CONFIG [key.sub=value ...]``: a stage's cluster checked before the run."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("preflight", help="before a long job: start the stage's workers as the run would, take one "
                                         "step of each, report memory per device (grpo, sft, reflect, eval configs)")
    p.add_argument("config", help="a stage config (configs/*/{grpo,sft,direct,reflect,eval}.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    p.add_argument("--out", default=None, help="also write the table (markdown) here")
    p.set_defaults(handler=run_preflight)


def run_preflight(args) -> int:
    from pathlib import Path

    from aurora_rl.config import load_config
    from aurora_rl.services import run_services
    from learner.preflight import preflight, table

    cfg = load_config(args.config, args.overrides)
    need_redis = cfg.stage == "grpo"  # the rollout and reward streams; the other stages use none
    with run_services(cfg.services, need_redis=need_redis) as services:
        checks = preflight(cfg, services.redis_url if need_redis else None)
    text = table(checks)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    failed = [c.what for c in checks if not c.ok]
    print(f"[preflight] {'everything fits' if not failed else 'will not run: ' + '; '.join(failed)}")
    return 1 if failed else 0
