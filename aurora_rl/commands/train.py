"""``aurora-rl train sft|reflect|grpo --config FILE [--resume] [key.sub=value ...]``."""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("train", help="run a training stage")
    stages = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, help_text in [
        ("sft", "stage 1: CoT SFT with [SEG] distillation (or the direct-answer teacher), Ray Train + DeepSpeed"),
    ]:
        p = stages.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="a stage config under configs/")
        p.add_argument("--resume", action="store_true", help="continue the run of the same run.name from its last checkpoint")
        p.add_argument("overrides", nargs="*", metavar="key.sub=value")
        p.set_defaults(handler=run_stage)


def run_stage(args) -> int:
    from aurora_rl.config import load_config
    from aurora_rl.services import run_services

    cfg = load_config(args.config, args.overrides, expect=args.stage)
    with run_services(cfg.services, need_redis=args.stage == "grpo"):
        if args.stage == "sft":
            from learner.sft_job import run_sft

            run_sft(cfg, resume=args.resume, stage="direct" if cfg.direct_answer else "sft")
    return 0
