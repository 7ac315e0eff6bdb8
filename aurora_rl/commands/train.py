"""``aurora-rl train sft|reflect|grpo --config FILE [--resume] [key.sub=value ...]``."""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("train", help="run a training stage")
    stages = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, help_text in [
        ("sft", "stage 1: CoT SFT with [SEG] distillation (or the direct-answer teacher), Ray Train + DeepSpeed"),
        ("reflect", "stage 2: mine the stage-1 model's failures, fine-tune on reflective corrections"),
        ("grpo", "stage 3: GRPO with rollout actors (vLLM + SAM), reward workers and a DeepSpeed learner group"),
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
    with run_services(cfg.services, need_redis=args.stage == "grpo") as services:
        if args.stage == "sft":
            from learner.sft_job import run_sft

            run_sft(cfg, resume=args.resume, stage="direct" if cfg.direct_answer else "sft")
        elif args.stage == "reflect":
            from learner.reflect_job import run_reflect

            run_reflect(cfg, resume=args.resume)
        elif args.stage == "grpo":
            from learner.grpo_job import run_grpo

            run_grpo(cfg, services.redis_url, resume=args.resume)
    return 0
