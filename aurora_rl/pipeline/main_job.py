"""The main job (``make demo``): the whole AURORA pipeline on the synthetic benchmark.

    synthetic benchmark -> tiny SAM pretraining -> direct-answer teacher -> stage 1 (CoT SFT + [SEG] distillation)
    -> stage 2 (reflective SFT) -> stage 3 (GRPO) -> evaluation of every stage -> report

on a private Ray node and a private Redis it starts and stops itself. Every stage goes
through the same config files and commands a user runs (configs/tiny/*.yaml with
overrides); the report is generated from the evaluation outputs, nothing typed in.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from aurora_rl.config import load_config
from aurora_rl.config.schema import MetricsConfig, ServicesConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "tiny"


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    videos: int
    sam_steps: int
    direct_epochs: int
    sft_epochs: int
    reflect_epochs: int
    mining_group: int
    grpo_steps: int
    grpo_prompts: int
    eval_max: int | None  # rows per split evaluated (None: all)
    eval_actors: int = 2


# 1,000 videos: at 300 the tiny model memorises the training scenes instead of learning to see
# (docs/DATA.md, "How many videos the tiny model needs").
FULL = DemoPlan(videos=1000, sam_steps=1000, direct_epochs=2, sft_epochs=10, reflect_epochs=1, mining_group=2,
                grpo_steps=30, grpo_prompts=8, eval_max=None)
QUICK = DemoPlan(videos=60, sam_steps=60, direct_epochs=1, sft_epochs=2, reflect_epochs=1, mining_group=1,
                 grpo_steps=3, grpo_prompts=4, eval_max=12)
EVAL_SPLITS = ["test_s", "test_u", "test_n"]
# Greedy answers of every stage get room to finish: a reflective answer (a first path, "wait , let
# me reconsider .", a corrected path) runs past GRPO's 150 sampled tokens, and a cut answer would
# score as malformed (on the 1,000-video demo this alone moved stage 2's test_s J by -0.02).
EVAL_MAX_NEW_TOKENS = 320


class Progress:
    def __init__(self, total_stages: int):
        self.total = total_stages
        self.done = 0
        self.started = time.monotonic()

    def stage(self, name: str) -> float:
        elapsed = time.monotonic() - self.started
        print(f"\n[demo] ({self.done + 1}/{self.total}) {name} -- {elapsed / 60:.1f} min elapsed", flush=True)
        return time.monotonic()

    def finish(self, name: str, started: float) -> None:
        self.done += 1
        print(f"[demo] {name}: done in {time.monotonic() - started:.0f} s", flush=True)


def run_main_job(out: str, quick: bool = False) -> int:
    from actors.eval_pool import evaluate_checkpoint
    from aurora_rl.data.synthetic import generate_benchmark
    from aurora_rl.evaluation.scoring import results_table
    from aurora_rl.services import run_services
    from learner.grpo_job import run_grpo
    from learner.reflect_job import run_reflect
    from learner.sft_job import run_sft

    plan = QUICK if quick else FULL
    demo = Path(out).resolve()
    data = demo / "data"
    runs = demo / "runs"
    progress = Progress(total_stages=10)
    sam = runs / "tiny-sam"
    # The pretrained SAM's mask decoder stays frozen: trained together with a still-random LLM it
    # learns to ignore the [SEG] prompt and segment every object (docs/FINDINGS.md). Later
    # stages inherit this from the checkpoint's model config.
    common = [f"data.root={data}", f"run.output_dir={runs}", "trainer.mask_frames_per_clip=2", "trainer.log_every=10",
              f"model.sam.path={sam}", "model.sam.train_mask_decoder=false"]

    _claim(demo, plan)

    t = progress.stage(f"synthetic benchmark: {plan.videos} videos")
    if not (data / "metadata.csv").exists():
        summary = generate_benchmark(data, videos=plan.videos, seed=0)
        print(f"[demo] {summary['rows']} rows in {data}")
    progress.finish("synthetic benchmark", t)

    t = progress.stage("tiny SAM: promptable-segmentation pretraining (stands in for a released SAM)")
    if (sam / "pretraining.json").exists():
        print(f"[demo] reusing {sam}")
    else:
        from aurora_rl.model.sam_pretrain import pretrain_tiny_sam

        pretrain_tiny_sam(data, sam, steps=plan.sam_steps)
    progress.finish("tiny SAM", t)

    stages = []
    with run_services(ServicesConfig()) as services:
        t = progress.stage("direct-answer teacher (the distillation target)")
        direct = load_config(CONFIGS / "direct.yaml", common + [f"trainer.epochs={plan.direct_epochs}"])
        teacher = _reuse_or(runs / "tiny-direct", lambda: run_sft(direct, stage="direct"))
        progress.finish("teacher", t)

        t = progress.stage("stage 1: CoT SFT with [SEG] feature distillation")
        sft = load_config(CONFIGS / "sft.yaml", common + [f"trainer.epochs={plan.sft_epochs}",
                                                          f"teacher_path={teacher}"])
        sft_ckpt = _reuse_or(runs / "tiny-sft", lambda: run_sft(sft, stage="sft"))
        progress.finish("stage 1", t)

        t = progress.stage("stage 2: reflective SFT on the stage-1 model's failures")
        reflect = load_config(CONFIGS / "reflect.yaml", common + [
            f"model.path={sft_ckpt}", f"trainer.epochs={plan.reflect_epochs}",
            f"rollout.sampling.group_size={plan.mining_group}", "rollout.num_actors=2"])
        reflect_ckpt = _reuse_or(runs / "tiny-reflect", lambda: run_reflect(reflect))
        progress.finish("stage 2", t)

        t = progress.stage("stage 3: GRPO (rollout actors, reward workers, DeepSpeed learner)")
        grpo = load_config(CONFIGS / "grpo.yaml", [
            f"data.root={data}", f"run.output_dir={runs}", f"model.path={reflect_ckpt}", f"model.sam.path={sam}",
            f"learner.steps={plan.grpo_steps}", f"learner.prompts_per_step={plan.grpo_prompts}",
            "learner.mask_frames_per_clip=2", f"learner.checkpoint_every={max(1, plan.grpo_steps // 3)}"])
        grpo_ckpt = _reuse_or(runs / "tiny-grpo", lambda: run_grpo(grpo, services.redis_url))
        progress.finish("stage 3", t)

        checkpoints = {"untrained": runs / "tiny-sft" / "init", "sft": sft_ckpt, "reflect": reflect_ckpt,
                       "grpo": grpo_ckpt}
        data_cfg = dataclasses.replace(sft.data, max_samples=plan.eval_max)
        results = {}
        for name, ckpt in checkpoints.items():
            t = progress.stage(f"evaluation: {name}")
            results[name] = evaluate_checkpoint(str(ckpt), data_cfg, EVAL_SPLITS, demo / "eval" / name,
                                                plan.eval_actors, MetricsConfig(), EVAL_MAX_NEW_TOKENS)
            print(results_table(results[name]))
            progress.finish(f"evaluation of {name}", t)
            stages.append((name, ckpt))
    index = _report(demo, stages, data)
    for verdict in json.loads((index.parent / "results.json").read_text())["verdict"]:
        print(f"[demo] {verdict['label']}: {verdict['headline']}")
    print(f"\n[demo] finished in {(time.monotonic() - progress.started) / 60:.1f} min. Report: {index}")
    return 0


def _claim(demo: Path, plan: DemoPlan) -> None:
    """Record the plan a demo folder is made with; refuse a folder made with another one.

    Stages found finished in the folder are reused, so a full demo run in the folder of a quick one
    would otherwise report the quick run's 60-video checkpoints as its own. Nothing is deleted.
    """
    path = demo / "demo_plan.json"
    wanted = dataclasses.asdict(plan)
    if path.exists():
        found = json.loads(path.read_text())
        diff = ", ".join(f"{k} {found.get(k)} (now {v})" for k, v in wanted.items() if found.get(k) != v)
        problem = f"made with another plan: {diff}" if found != wanted else None
    else:
        legacy = demo / "data" / "synthetic_config.json"  # a folder made before plans were recorded
        videos = json.loads(legacy.read_text()).get("videos") if legacy.exists() else plan.videos
        problem = f"of {videos} videos, not {plan.videos}" if videos != plan.videos else None
    if problem:
        raise FileExistsError(f"{demo} holds a demo {problem}. Give another --out, "
                              f"or remove the folder to start that demo over")
    if not path.exists():
        demo.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(wanted, indent=2) + "\n")


def _reuse_or(run_dir: Path, train) -> Path:
    """A finished stage (its final checkpoint exists) is reused when the demo is run again."""
    final = run_dir / "checkpoint"
    if (final / "aurora_model.json").exists():
        print(f"[demo] reusing {final}")
        return final
    return Path(train())


def _report(demo: Path, stages: list[tuple[str, Path]], data: Path) -> Path:
    from aurora_rl.report import StageResult, build_report, check_report_links

    metrics = {"untrained": [], "sft": [demo / "runs" / "tiny-sft" / "metrics.jsonl"],
               "reflect": [demo / "runs" / "tiny-reflect" / "metrics.jsonl"],
               "grpo": [demo / "runs" / "tiny-grpo" / "metrics.jsonl"]}
    results = [StageResult(name, ckpt, demo / "eval" / name, [m for m in metrics[name] if m.exists()])
               for name, ckpt in stages]
    index = build_report(demo, results, data, demo / "report")
    broken = check_report_links(index)
    if broken:
        raise RuntimeError(f"the report links to missing files: {broken}")
    return index
