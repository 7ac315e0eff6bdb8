"""Does GRPO improve on its starting checkpoint by more than the spread across seeds?

    .venv/bin/python bench/research/grpo_seeds.py --start runs/demo/runs/tiny-reflect/checkpoint \
        --data runs/demo/data --steps 30 --seeds 0 1 2 --out runs/grpo_seeds

Evaluates the starting checkpoint once, runs ``train grpo`` from it with each seed (same
config otherwise), evaluates every result on test_s / test_u (official metrics), and prints
one table: the start, each seed, the mean and std of the seeds, and whether the mean gain
exceeds the seeds' spread (std), per metric. The training reward row compares the mean reward of
the first tenth of the steps (all seeds) with each seed's last tenth. Everything runs on one private Ray node and
Redis.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from aurora_rl.pipeline.main_job import EVAL_MAX_NEW_TOKENS

ROOT = Path(__file__).resolve().parents[2]
METRICS = [("train", "reward"), ("test_s", "J"), ("test_u", "J"), ("test_s", "class_acc"), ("test_u", "class_acc"),
           ("mix", "J")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", required=True, help="checkpoint GRPO starts from (stage 2)")
    parser.add_argument("--data", required=True, help="dataset root of the evaluation splits (test_s, test_u)")
    parser.add_argument("--grpo-data", default=None,
                        help="dataset root GRPO samples its training split from (default: --data); e.g. a second "
                             "synthetic set whose scenes the SFT stages never saw")
    parser.add_argument("--more-eval", default=None, metavar="DATA",
                        help="a second dataset root whose test_s / test_u also evaluate the start and every seed "
                             "(e.g. `aurora-rl data synth --seed 1`): its table, and one pooled over both sets by clip")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/grpo_seeds")
    parser.add_argument("--eval-actors", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=EVAL_MAX_NEW_TOKENS,
                        help="greedy evaluation length (the main job's; room for reflective answers)")
    parser.add_argument("--start-results", default=None,
                        help="results.json of an earlier evaluation of --start with the same data and length (reused)")
    parser.add_argument("--resume", action="store_true",
                        help="continue a seed's run that stopped short of --steps from its last checkpoint (exact "
                             "resume; with the constant lr schedule, the same as one longer run). Its evaluation at "
                             "the earlier step is kept as eval/seedN-stepK and it is evaluated again")
    parser.add_argument("--config", default=str(ROOT / "configs" / "tiny" / "grpo.yaml"),
                        help="the GRPO config every seed runs (e.g. configs/tiny/gain/grpo.yaml)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra overrides of --config for every seed (e.g. learner.optim.lr=3e-4)")
    args = parser.parse_args()

    from aurora_rl.config import load_config
    from aurora_rl.config.schema import ServicesConfig
    from aurora_rl.model.checkpoint import data_config_for
    from aurora_rl.services import run_services
    from learner.grpo_job import run_grpo

    out = Path(args.out).resolve()
    data = data_config_for(args.start, args.data)
    results = {}
    with run_services(ServicesConfig()) as services:
        def evaluate(checkpoint: str, name: str) -> dict:
            done = Path(args.start_results) if name == "start" and args.start_results else None
            return evaluate_held_out(checkpoint, data, out / "eval" / name, args.eval_actors, args.max_new_tokens, done)

        results["start"] = evaluate(args.start, "start")
        more = {}
        if args.more_eval:
            more_data = data_config_for(args.start, args.more_eval)
            more_dir = more_eval_dir(out, args.more_eval)
            more["start"] = evaluate_held_out(args.start, more_data, more_dir / "start", args.eval_actors,
                                              args.max_new_tokens)
        grpo_root = Path(args.grpo_data).resolve() if args.grpo_data else data.root
        for seed in args.seeds:
            cfg = load_config(args.config, [
                f"data.root={grpo_root}", f"run.output_dir={out}", f"run.name=seed{seed}", f"run.seed={seed}",
                f"model.path={Path(args.start).resolve()}", f"learner.steps={args.steps}",
                f"learner.prompts_per_step={args.prompts}", "learner.mask_frames_per_clip=2",
                f"learner.checkpoint_every={args.steps}", *args.set])
            final = out / f"seed{seed}" / "checkpoint"
            done = trained_steps(out / f"seed{seed}")
            if done and done < args.steps and args.resume:
                keep_earlier_evaluation(out / "eval" / f"seed{seed}", done)
                final = run_grpo(cfg, services.redis_url, resume=True)
            elif not (final / "aurora_model.json").exists():
                final = run_grpo(cfg, services.redis_url)
            results[f"seed{seed}"] = evaluate(str(final), f"seed{seed}")
            if args.more_eval:
                more[f"seed{seed}"] = evaluate_held_out(str(final), more_data, more_dir / f"seed{seed}",
                                                        args.eval_actors, args.max_new_tokens)
    seeds = [f"seed{s}" for s in args.seeds]
    add_training_reward(results, out, seeds, window=max(1, args.steps // 10))
    table, results = report(results, more, seeds, out, args)
    print(table)
    (out / "grpo_seeds.md").write_text(table + "\n")
    (out / "grpo_seeds.json").write_text(json.dumps(results, indent=2, default=float))
    return 0


def trained_steps(run_dir: Path) -> int:
    """The step of a GRPO run's last checkpoint (0 when it has none)."""
    latest = run_dir / "checkpoints" / "latest"
    if not latest.exists():
        return 0
    return json.loads((run_dir / "checkpoints" / latest.read_text().strip() / "job_state.json").read_text())["step"]


def keep_earlier_evaluation(folder: Path, step: int) -> None:
    """Move a seed's evaluation at ``step`` aside (to ``<folder>-step<step>``) before its run goes on."""
    if folder.exists():
        folder.rename(folder.with_name(f"{folder.name}-step{step}"))


def evaluate_held_out(checkpoint: str, data, out: Path, actors: int, max_new_tokens: int,
                      done: Path | None = None) -> dict:
    """The checkpoint's greedy test_s / test_u results in ``out``. Results already there (or in
    ``done``, an earlier evaluation of the same checkpoint) are read instead."""
    from aurora_rl.config.schema import MetricsConfig
    from actors.eval_pool import evaluate_checkpoint

    done = done or out / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    return evaluate_checkpoint(checkpoint, data, ["test_s", "test_u"], out, actors, MetricsConfig(), max_new_tokens)


def report(results: dict, more: dict, seeds: list[str], out: Path, args) -> tuple[str, dict]:
    """The seeds' table on the evaluation set; with ``--more-eval``, one on the second set and one
    pooled over both; then the clip-by-clip gain intervals. Returns it with the results to save."""
    table = render(results, seeds)
    if more:
        for name in more:
            more[name]["train"] = results[name]["train"]
        pooled = {name: pool(results[name], more[name]) for name in results}
        table += (f"\n\n{args.more_eval}, test splits:\n\n{render(more, seeds)}"
                  f"\n\nboth sets pooled ({clip_counts(results['start'], more['start'])}):\n\n{render(pooled, seeds)}")
        results = {"eval": results, "more_eval": more, "pooled": pooled}
    sets = [out / "eval"] + ([more_eval_dir(out, args.more_eval)] if more else [])
    start_dirs = [Path(args.start_results).parent if args.start_results else out / "eval" / "start"]
    start_dirs += [sets[-1] / "start"] if more else []
    intervals = render_intervals(clip_scores(start_dirs), [clip_scores([d / s for d in sets]) for s in seeds])
    where = "both sets" if more else "one set"
    table += f"\n\nthe seeds' mean gain over the start, clip by clip ({where}):\n\n{intervals}"
    return table, results


def more_eval_dir(out: Path, data: str) -> Path:
    """Where the evaluations on ``--more-eval``'s dataset go: one folder per dataset."""
    return out / f"eval-{Path(data).name}"


def pool(a: dict, b: dict) -> dict:
    """Two evaluations of one checkpoint on different clips as one: every split's metrics are the
    clip-weighted mean (each clip has the same number of frames); mix is the mean over the splits."""
    from aurora_rl.metrics.refavs_metrics import mix_score

    out = {"train": a["train"]}
    for split in ("test_s", "test_u"):
        na, nb = a[split]["clips"], b[split]["clips"]
        out[split] = {key: (a[split][key] * na + b[split][key] * nb) / (na + nb) for key in ("J", "F", "class_acc")}
        out[split]["clips"] = na + nb
    out["mix"] = mix_score(out)
    return out


def clip_counts(a: dict, b: dict) -> str:
    return ", ".join(f"{split} {a[split]['clips']} + {b[split]['clips']} clips" for split in ("test_s", "test_u"))


def add_training_reward(results: dict, out: Path, seeds: list[str], window: int) -> None:
    """Mean training reward: the first ``window`` steps of every seed (the start policy, sampled on
    each seed's prompts) as the start, each seed's last ``window`` steps as that seed's value."""
    first = []
    for seed in seeds:
        rows = [json.loads(line) for line in (out / seed / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rewards = [r["reward"] for r in sorted(rows, key=lambda r: r["step"]) if "reward" in r]
        first.extend(rewards[:window])
        results[seed]["train"] = {"reward": statistics.mean(rewards[-window:])}
    results["start"]["train"] = {"reward": statistics.mean(first)}


def clip_scores(eval_dirs: list[Path]) -> dict:
    """{split: {uid: (clip J, class right)}} from the ``samples.jsonl`` of one or more evaluations
    of the same checkpoint (on different clips)."""
    from aurora_rl.report.eval_outputs import load_stage_eval

    scores: dict = {}
    for folder in eval_dirs:
        for uid, row in load_stage_eval(folder).samples.items():
            scores.setdefault(row["split"], {})[uid] = (row["iou"], float(row["target_class"] == row["gt_class"]))
    return scores


def render_intervals(start: dict, seeds: list[dict]) -> str:
    """The seeds' mean gain over the start in mean clip J and in class accuracy per split, on the
    clips all were scored on, with its 95 % paired bootstrap interval over clips: how far the gain
    could move on another draw of test clips."""
    from aurora_rl.metrics.paired_bootstrap import bootstrap_mean_change, paired_differences

    lines = ["| metric | clips | gain | 95 % interval over clips | interval above 0 |", "|---|---|---|---|---|"]
    for split in ("test_s", "test_u"):
        for k, key in enumerate(("clip J", "class_acc")):
            def pick(scores: dict) -> dict:
                return {uid: v[k] for uid, v in scores[split].items()}

            g = bootstrap_mean_change([paired_differences(pick(start), [pick(s) for s in seeds])])
            above = "yes" if g.low > 0 else "no"
            lines.append(f"| {split} {key} | {g.clips} | {g.change:+.4f} | [{g.low:+.4f}, {g.high:+.4f}] | {above} |")
    return "\n".join(lines)


def render(results: dict, seeds: list[str]) -> str:
    head = "| metric | start | " + " | ".join(seeds) + " | mean | std | gain | gain > std |"
    lines = [head, "|" + "---|" * (len(seeds) + 6)]
    for split, key in METRICS:
        start = results["start"][split][key]
        values = [results[s][split][key] for s in seeds]
        mean = statistics.mean(values)
        std = statistics.pstdev(values)
        gain = mean - start
        cells = [f"{start:.4f}", *(f"{v:.4f}" for v in values), f"{mean:.4f}", f"{std:.4f}", f"{gain:+.4f}",
                 "yes" if gain > std else "no"]
        lines.append(f"| {split} {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
