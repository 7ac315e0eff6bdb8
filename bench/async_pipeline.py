"""The asynchronous pipeline side by side: steps per second at ``learner.max_policy_lag`` k = 0, 1
and 2, the broadcast time's trend over a long run, and the learning check.

    PYTHONPATH=. .venv/bin/python bench/async_pipeline.py [--steps 10] [--trend-steps 200]
        [--set KEY=VALUE ...] [--out table.md]
    PYTHONPATH=. .venv/bin/python bench/async_pipeline.py --learning [--seeds 0 1 2] [--out table.md]

Throughput: every case is the real stage-3 job (``GRPOJob``: one rollout actor with vLLM, one
reward worker, one DeepSpeed learner rank, Redis streams) on a small synthetic benchmark from a
random tiny policy, one after another on one private Redis and Ray node. Pinned as on separate
GPUs: every thread of the rollout actor's process on the first core, every thread of the learner
rank's on the second; the reward worker, Redis and the driver are not pinned. Cases: k = 0, 1, 2
pinned, and k = 0 unpinned. The first ``--warmup`` steps of each are dropped. The target: k = 1's
step time at most 1.15 x max(sampling with its [SEG] pass, learning + broadcast) of the pinned
k = 0 run. ``--set`` balances the two sides (the defaults are balanced on this machine; the table
reports the ratio).

Trend: a ``--trend-steps`` run at k = 1 (same job, unpinned) logs the broadcast's seconds every
step; the table gives the least-squares slope and the means of its first and last quarters.

Learning (``--learning``): ``configs/tiny/grpo_32_rows.yaml`` (needs ``make demo``'s stage-2
checkpoint) for each seed at k = 0 and k = 1: the sampled IoU reward of steps 1-20 and 81-100, and
over steps 81-100 how far the learner's masks of the learned completions are from the actors'
(the masks their IoU rewards scored): the difference of the two's ground-truth IoU, and their
agreement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.grpo_step import start_checkpoint
from bench.side_by_side import Table, machine

ROOT = Path(__file__).resolve().parents[1]
CASES = [("k=0, pinned", 0, True), ("k=1, pinned", 1, True), ("k=2, pinned", 2, True), ("k=0, unpinned", 0, False)]
# balanced on 2 cores: sampling + [SEG] pass about as long as learning + broadcast
BALANCE = ["learner.prompts_per_step=4", "rollout.sampling.group_size=3", "rollout.sampling.max_new_tokens=48",
           "learner.mask_frames_per_clip=2"]


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of process ``pid`` to ``cores`` (threads made later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cores)


def run_case(data: Path, checkpoint: Path, out: Path, redis_url: str, name: str, k: int, pinned: bool,
             steps: int, overrides: list[str]) -> list[dict]:
    """One job of ``steps`` steps at lag bound ``k``; its metrics rows in step order."""
    import ray

    from aurora_rl.config import load_config
    from learner.grpo_job import GRPOJob
    from learner.train_log import rows_by_step

    run = name.replace(", ", "-").replace("=", "")
    cfg = load_config(ROOT / "configs" / "tiny" / "grpo.yaml", [
        f"data.root={data}", f"run.output_dir={out}", f"run.name={run}", f"model.path={checkpoint}",
        "rollout.num_actors=1", "reward.num_workers=1", "learner.num_ranks=1", f"learner.steps={steps}",
        f"learner.checkpoint_every={steps}", f"learner.max_policy_lag={k}", "placement.autoscale.enabled=false",
        *BALANCE, *overrides])
    job = GRPOJob(cfg, redis_url)
    try:
        job.start()
        if pinned and (os.cpu_count() or 1) >= 2:
            (actor,) = job.rollout.actors.values()
            pin(ray.get(actor.ready.remote())["pid"], {0})
            pin(ray.get(job.learners.sender.__ray_call__.remote(lambda self: os.getpid())), {1})
        job.run()
    finally:
        job.stop()
    rows = rows_by_step([out / run / "metrics.jsonl"])
    return [rows[s] for s in sorted(rows)]


def mean(rows: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in rows)


def slope_per_100(values: list[float]) -> float:
    """Least-squares slope of ``values`` against their index, per 100 steps."""
    n = len(values)
    xs = range(n)
    mx, my = (n - 1) / 2, statistics.mean(values)
    sxx = sum((x - mx) ** 2 for x in xs)
    return 100 * sum((x - mx) * (y - my) for x, y in zip(xs, values)) / sxx if sxx else 0.0


def throughput(args, data: Path, checkpoint: Path, tmp: Path, redis_url: str) -> Table:
    runs = {name: run_case(data, checkpoint, tmp / "runs", redis_url, name, k, pinned, args.steps, args.set)
            [args.warmup:] for name, k, pinned in CASES if name in args.cases}
    base = runs["k=0, pinned"]
    sample_side = mean(base, "time_sample_s")  # the rollout calls: vLLM, the [SEG] pass, loading, publishing
    learn_side = mean(base, "time_learn_s") + mean(base, "time_broadcast_s")
    bound = max(sample_side, learn_side)
    table = Table(f"Asynchronous pipeline: GRPO steps per second by policy lag bound k ({args.steps - args.warmup} "
                  "steps after warm-up, tiny policy, 1 rollout actor, 1 learner rank)",
                  "k = 0, pinned", "the case")
    for name, rows in runs.items():
        table.add(name, "steps/s", 1 / mean(base, "time_step_s"), 1 / mean(rows, "time_step_s"))
    k1 = mean(runs["k=1, pinned"], "time_step_s")
    table.notes += [
        f"k = 0 pinned: sampling with its [SEG] pass {sample_side:.2f} s, learning + broadcast {learn_side:.2f} s "
        f"(balance: learning side / sampling side = {learn_side / sample_side:.2f}), reward wait "
        f"{mean(base, 'time_reward_wait_s'):.2f} s, step {mean(base, 'time_step_s'):.2f} s",
        f"target: k = 1's step time <= 1.15 x max(sampling side, learning side) = {1.15 * bound:.2f} s; measured "
        f"{k1:.2f} s = {k1 / bound:.2f} x the bound: {'met' if k1 <= 1.15 * bound else 'NOT met'}",
        "mean policy lag of the learned groups: " + ", ".join(
            f"{name} {mean(rows, 'policy_lag'):.2f}" for name, rows in runs.items()),
        "stale groups dropped: " + ", ".join(f"{name} {rows[-1]['stale_dropped']:.0f}" for name, rows in runs.items()),
        f"balanced with: {' '.join(BALANCE + args.set)}",
    ]
    lines = ["Phases, mean seconds per step (asynchronous: the driver's wait for each phase):", "",
             "| case | sampling wait | reward wait | learn | broadcast wait | weights wait (actor) | step |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rows in runs.items():
        cells = [mean(rows, k) for k in ("time_sample_s", "time_reward_wait_s", "time_learn_s", "time_broadcast_s",
                                         "weights_wait_s", "time_step_s")]
        lines.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    table.sections.append("\n".join(lines))
    if args.trend_steps:
        rows = run_case(data, checkpoint, tmp / "runs", redis_url, "k=1, trend", 1, False, args.trend_steps,
                        args.set)[args.warmup:]
        seconds = [r["broadcast_s"] for r in rows]
        quarter = max(1, len(seconds) // 4)
        table.sections.append("\n".join([
            f"Broadcast time over a {args.trend_steps}-step run at k = 1 (steps {args.warmup + 1}-{args.trend_steps}):",
            "", "| first quarter, mean s | last quarter, mean s | slope, s per 100 steps | max s |",
            "|---:|---:|---:|---:|",
            f"| {statistics.mean(seconds[:quarter]):.4f} | {statistics.mean(seconds[-quarter:]):.4f} | "
            f"{slope_per_100(seconds):+.5f} | {max(seconds):.4f} |"]))
    return table


def learning(args, redis_url: str, out: Path) -> str:
    """The fixed 32-row task for each seed at k = 0 and 1: the sampled IoU reward early and late.

    A run whose metrics already reach step 100 in ``out`` is read, not run again, so an interrupted
    check goes on where it stopped (``--runs-dir``)."""
    from aurora_rl.config import load_config
    from learner.grpo_job import run_grpo
    from learner.train_log import rows_by_step

    lagged = args.set  # overrides of the k = 1 runs only (the objective, say); each set gets its own runs
    suffix = "".join(f"-{item.split('=', 1)[1]}" for item in lagged)
    lines = ["### Learning check: `configs/tiny/grpo_32_rows.yaml`, sampled IoU reward (mean of steps)", "",
             f"Machine: {machine()}", ""]
    if lagged:
        lines += [f"k = 1 with {', '.join(f'`{item}`' for item in lagged)}", ""]
    lines += ["| seed | k | steps 1-20 | steps 81-100 | mask IoU, learner - sampled | mask agreement | steps' time, min |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    curves: dict[tuple[int, int], list[float]] = {}  # (k, seed): reward_iou of steps 1-100
    for seed in args.seeds:
        for k in (0, 1):
            name = f"grpo-32-rows-k{k}-seed{seed}" + (suffix if k else "")
            metrics = out / name / "metrics.jsonl"
            rows = rows_by_step([metrics]) if metrics.exists() else {}
            if 100 not in rows:
                cfg = load_config(ROOT / "configs" / "tiny" / "grpo_32_rows.yaml", [
                    f"run.name={name}", f"run.output_dir={out}", f"run.seed={seed}", f"learner.max_policy_lag={k}",
                    *(lagged if k else [])])
                run_grpo(cfg, redis_url)
                rows = rows_by_step([metrics])
            wall = sum(rows[s]["time_step_s"] for s in range(1, 101)) / 60
            curve = curves[(k, seed)] = [rows[s]["reward_iou"] for s in range(1, 101)]
            drift, agreement = late_masks(rows)
            lines.append(f"| {seed} | {k} | {statistics.mean(curve[:20]):.3f} | {statistics.mean(curve[80:]):.3f} "
                         f"| {drift} | {agreement} | {wall:.1f} |")
            print(lines[-1], flush=True)
    finals = {k: [statistics.mean(curve[80:]) for (kk, _), curve in curves.items() if kk == k] for k in (0, 1)}
    low, high = min(finals[0]), max(finals[0])
    sync, late_k1 = statistics.mean(finals[0]), statistics.mean(finals[1])
    lines += ["", f"- steps 81-100, k = 0: mean {sync:.3f}, seeds from {low:.3f} to {high:.3f}; "
              f"k = 1: mean {late_k1:.3f}, seeds from {min(finals[1]):.3f} to {max(finals[1]):.3f}.",
              f"- k = 1 reaches the synchronous final reward within the spread of the seeds "
              f"(its mean >= the lowest synchronous seed): {late_k1 >= low}"]
    if args.out:
        plot_learning(curves, args.out.with_suffix(".png"))
        lines += ["", f"![sampled IoU reward by step, k = 0 and 1]({args.out.with_suffix('.png').name})"]
    return "\n".join(lines) + "\n"


def late_masks(rows: dict[int, dict]) -> tuple[str, str]:
    """Steps 81-100's mean mask_iou_learner - mask_iou_sampled and mask_agreement (aurora_rl/grpo/
    off_policy.py), as table cells ("-" for a run logged before the learner compared the masks)."""
    import math

    late = [rows[s] for s in range(81, 101) if not math.isnan(rows[s].get("mask_agreement", math.nan))]
    if not late:
        return "-", "-"
    drift = statistics.mean(r["mask_iou_learner"] - r["mask_iou_sampled"] for r in late)
    return f"{drift:+.5f}", f"{statistics.mean(r['mask_agreement'] for r in late):.4f}"


def plot_learning(curves: dict[tuple[int, int], list[float]], path: Path) -> None:
    """The sampled IoU reward by step: each run faint, each k's mean over seeds solid (moving average)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from aurora_rl.report.curves import ema

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for k, color in ((0, "tab:blue"), (1, "tab:orange")):
        runs = [np.array(ys) for (kk, _), ys in sorted(curves.items()) if kk == k]
        steps = np.arange(1, len(runs[0]) + 1)
        for ys in runs:
            ax.plot(steps, ema(ys, 10), color=color, alpha=0.3, linewidth=0.9)
        ax.plot(steps, ema(np.mean(runs, axis=0), 10), color=color, linewidth=2.0,
                label=f"k = {k}: mean of {len(runs)} seeds")
    ax.set_title("fixed 32-row GRPO task: sampled IoU reward (moving average, span 10)", fontsize=10)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("reward_iou")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="GRPO steps per case")
    parser.add_argument("--warmup", type=int, default=2, help="first steps of each case left out")
    parser.add_argument("--trend-steps", type=int, default=200, help="the broadcast trend run's steps (0: none)")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more overrides of tiny/grpo.yaml (--learning: of its k = 1 runs)")
    parser.add_argument("--cases", nargs="*", default=[name for name, *_ in CASES], choices=[name for name, *_ in CASES],
                        help="which throughput cases (the first two are always needed)")
    parser.add_argument("--learning", action="store_true", help="the learning check instead of the throughput")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="the learning check's run folders (kept; runs already finished there are read)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    args = parser.parse_args()
    if not {"k=0, pinned", "k=1, pinned"} <= set(args.cases):
        parser.error("--cases must include 'k=0, pinned' and 'k=1, pinned' (the target compares them)")
    from aurora_rl.config.schema import ServicesConfig
    from aurora_rl.data.synthetic import generate_benchmark
    from aurora_rl.services import run_services

    with tempfile.TemporaryDirectory() as tmp, run_services(ServicesConfig()) as services:
        tmp = Path(tmp)
        if args.learning:
            text = learning(args, services.redis_url, args.runs_dir or tmp / "runs")
            print(text)
            if args.out:
                args.out.write_text(text)
            return
        generate_benchmark(tmp / "synth", args.videos, seed=0)
        checkpoint = start_checkpoint(tmp / "start", tmp / "synth")
        throughput(args, tmp / "synth", checkpoint, tmp, services.redis_url).emit(args.out)


if __name__ == "__main__":
    main()
