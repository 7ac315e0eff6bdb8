"""``aurora-rl demo``: the main job, the whole pipeline on the synthetic benchmark."""

from __future__ import annotations


def register(sub) -> None:
    parser = sub.add_parser("demo", help="run the whole pipeline on the synthetic benchmark with the tiny model")
    parser.add_argument("--out", default=None,
                        help="folder for data, checkpoints and the report "
                             "(default runs/demo; runs/demo-quick with --quick)")
    parser.add_argument("--quick", action="store_true", help="a first look in a few minutes")
    parser.set_defaults(handler=run_demo)


def demo_folder(args) -> str:
    """``--out``, or the default of the mode: a quick demo never shares the full demo's folder."""
    return args.out or ("runs/demo-quick" if args.quick else "runs/demo")


def run_demo(args) -> int:
    from aurora_rl.pipeline.main_job import run_main_job

    return run_main_job(demo_folder(args), quick=args.quick)
