"""``aurora-rl eval --ckpt C --data DIR --splits test_s,test_u,test_n [--compare C2]``, or
``aurora-rl eval --config configs/tiny/eval.yaml [key=value ...]``."""

from __future__ import annotations

import argparse
import sys

from aurora_rl.evaluation.clip_loading import ON_BAD_CLIP


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint on held-out splits (official metrics)")
    p.add_argument("--config", default=None,
                   help="an eval config (configs/*/eval.yaml): model.path, data (root, eval_splits, layout, "
                        "max_samples), num_actors, max_new_tokens, metrics; writes to run.output_dir/run.name")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="overrides of --config")
    p.add_argument("--ckpt", default=None, help="aurora_rl checkpoint folder, or 'largest-object' for the baseline")
    p.add_argument("--data", default=None, help="dataset folder (Ref-AVS layout)")
    p.add_argument("--splits", default="test_s,test_u,test_n", help="Ref-AVS: test_s,test_u,test_n; AVSBench: test")
    p.add_argument("--layout", choices=["refavs", "avsbench-s4", "avsbench-ms3"], default="refavs",
                   help="the dataset's layout (AVSBench: unreferenced, the expression is 'the sounding object')")
    p.add_argument("--compare", default=None, help="a second checkpoint, shown side by side with differences")
    p.add_argument("--out", default=None, help="output folder (default: <ckpt>/eval)")
    p.add_argument("--actors", type=positive_int, default=1, help="evaluation actors (each holds a vLLM engine)")
    p.add_argument("--max-samples", type=positive_int, default=None, help="first N rows per split (N >= 1)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs each evaluation actor asks Ray for")
    p.add_argument("--mask-size", type=int, default=None,
                   help="score at this mask size (default: the checkpoint's; the official code scores at 256)")
    p.add_argument("--max-new-tokens", type=int, default=150)
    p.add_argument("--convention", choices=["official", "aurora"], default="official")
    p.add_argument("--on-bad-clip", choices=ON_BAD_CLIP, default="fail",
                   help="a clip whose files cannot be read: fail (stop, naming the file) or skip (evaluate the "
                        "rest; the skipped clips are listed with the results)")
    p.set_defaults(handler=run_eval)


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--max-samples 0`` would evaluate nothing, -1 would drop
    the last row of each split)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def unknown_splits(splits: list[str], layout: str) -> str | None:
    """What is wrong with ``splits`` for ``layout`` (none given, or one the layout does not have),
    naming the valid ones; None if nothing."""
    from aurora_rl.data import layout_splits

    valid = layout_splits(layout)
    unknown = [s for s in splits if s not in valid]
    if splits and not unknown:
        return None
    got = f"unknown split(s) {', '.join(map(repr, unknown))}" if unknown else "no split given"
    return f"{got} for layout {layout} (valid: {', '.join(valid)})"


def run_eval(args) -> int:
    if args.config:
        return run_eval_config(args)
    if args.overrides or not (args.ckpt and args.data):
        print("aurora-rl eval: give --config FILE [key=value ...], or --ckpt and --data", file=sys.stderr)
        return 2
    return run_eval_args(args)


def run_eval_config(args) -> int:
    """An eval config: the checkpoint, data, splits, actors and convention it names."""
    from pathlib import Path

    from actors.eval_pool import evaluate_checkpoint
    from aurora_rl.config import ConfigError, load_config
    from aurora_rl.evaluation.scoring import results_table
    from aurora_rl.model.checkpoint import data_config_for
    from aurora_rl.services import run_services

    cfg = load_config(args.config, args.overrides, expect="eval")
    if not cfg.model.path:
        raise FileNotFoundError(f"{args.config}: model.path names no checkpoint to evaluate")
    d = cfg.data
    problem = unknown_splits(d.eval_splits, d.layout)
    if problem:
        raise ConfigError(f"{args.config}: data.eval_splits: {problem}")
    data = data_config_for(cfg.model.path, d.root, layout=d.layout, max_samples=d.max_samples)
    out = Path(cfg.run.output_dir) / cfg.run.name
    with run_services(cfg.services, need_redis=False):
        results = evaluate_checkpoint(cfg.model.path, data, d.eval_splits, out, cfg.num_actors, cfg.metrics,
                                      cfg.max_new_tokens, gpus_per_actor=cfg.gpus_per_actor,
                                      on_bad_clip=args.on_bad_clip)
    print(results_table(results))
    print(f"tables and per-sample outputs under {out}")
    return 0


def run_eval_args(args) -> int:
    from pathlib import Path

    from actors.eval_pool import evaluate_checkpoint
    from aurora_rl.config.schema import DataConfig, MetricsConfig, ServicesConfig
    from aurora_rl.evaluation.scoring import results_table, write_tables
    from aurora_rl.model.checkpoint import data_config_for
    from aurora_rl.services import run_services

    splits = [s for s in args.splits.split(",") if s]
    problem = unknown_splits(splits, args.layout)
    if problem:
        print(f"aurora-rl eval: error: argument --splits: {problem}", file=sys.stderr)
        return 2
    metrics = MetricsConfig(convention=args.convention)
    if args.ckpt == "largest-object":
        from aurora_rl.evaluation.baselines import largest_object_predictions
        from aurora_rl.evaluation.scoring import EvaluationWriter

        data = DataConfig(root=args.data, max_samples=args.max_samples)
        out = Path(args.out or "eval-largest-object")
        with EvaluationWriter(metrics, out) as writer:
            for split in splits:
                writer.add(split, largest_object_predictions(data, split, args.on_bad_clip))
        results = writer.results()
        write_tables(results, out, "Baseline: always the largest object")
        print(results_table(results))
        return 0
    sizes = {} if args.mask_size is None else {"mask_size": args.mask_size}
    data = data_config_for(args.ckpt, args.data, layout=args.layout, max_samples=args.max_samples, **sizes)
    out = Path(args.out or Path(args.ckpt) / "eval")
    with run_services(ServicesConfig(), need_redis=False):
        results = evaluate_checkpoint(args.ckpt, data, splits, out / "a", args.actors, metrics, args.max_new_tokens,
                                      gpus_per_actor=args.gpus_per_actor, on_bad_clip=args.on_bad_clip)
        print(results_table(results))
        if args.compare:
            other = evaluate_checkpoint(args.compare, data, splits, out / "b", args.actors, metrics,
                                        args.max_new_tokens, gpus_per_actor=args.gpus_per_actor,
                                        on_bad_clip=args.on_bad_clip)
            print(f"\n{args.compare} (difference to {args.ckpt}):")
            print(results_table(other, baseline=results))
            write_tables(other, out, f"{args.compare} against {args.ckpt}", baseline=results)
            verdict = compare_evaluations(args.ckpt, out / "a", args.compare, out / "b", results)
            print(f"\n{verdict}")
            with open(out / "results.md", "a") as f:
                f.write(f"\n## Verdict\n\n{verdict}\n")
    print(f"tables and per-sample outputs under {out}")
    return 0


def compare_evaluations(name_a: str, dir_a, name_b: str, dir_b, results_a: dict) -> str:
    """The report's verdict on B against A: which J changes lie beyond the noise of the test clips."""
    from aurora_rl.report.eval_outputs import load_stage_eval
    from aurora_rl.report.verdict import compare_stages, judged_splits, verdict_markdown

    verdict = compare_stages(name_a, load_stage_eval(dir_a), name_b, load_stage_eval(dir_b), judged_splits(results_a))
    return verdict_markdown([verdict])
