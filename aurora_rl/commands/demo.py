"""``aurora-rl demo``: the main job, the whole pipeline on the synthetic benchmark."""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("demo", help="run the whole pipeline on the synthetic benchmark with the tiny model")
    parser.add_argument("--out", default="runs/demo", help="folder for data, checkpoints and the report")
    parser.add_argument("--quick", action="store_true", help="a first look in a few minutes")
    parser.set_defaults(handler=run_demo)


def run_demo(args) -> int:
    from aurora_rl.pipeline.main_job import run_main_job

    return run_main_job(args.out, quick=args.quick)
