"""The driver of stage 1 (and the direct-answer teacher): prepare, run Ray Train, publish.

    aurora-rl train sft --config configs/tiny/sft.yaml [--resume] [key=value ...]

1. reads the training split and its CoT (or the direct answers), validates and counts them;
2. writes the run's initial checkpoint (a tiny random policy with a tokenizer over the
   corpus, its LLM text-pretrained when ``model.tiny.text_pretrain.steps`` > 0, or a pretrained
   backbone from ``model.path``; an aurora_rl checkpoint at
   ``model.path`` is used as it is) so every rank starts from identical weights;
3. runs ``TorchTrainer`` (N workers, DeepSpeed inside) under ``runs/<name>/ray_train``;
4. copies the final policy to ``runs/<name>/checkpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from aurora_rl.config.schema import DataConfig, ModelConfig, SFTConfig
from learner.sft_data import SFTExample, listing_example


def run_dir(cfg) -> Path:
    return Path(cfg.run.output_dir) / cfg.run.name


def training_rows(data: DataConfig) -> list:
    """The metadata rows a stage trains on: the training split, up to ``data.max_samples``."""
    from aurora_rl.data import refavs_layout as layout

    rows = [r for r in layout.read_metadata(Path(data.root)) if r.split == data.train_split]
    return rows[: data.max_samples]


def target_class(row, facts: dict) -> str | None:
    """The class a row refers to: from the scene facts where there are some (synthetic data),
    else the class part of its uid, as the official data and its reward take it (None: null row)."""
    from aurora_rl.data import refavs_layout as layout

    if row.uid in facts:
        return facts[row.uid]["target_class"]
    return None if row.split == layout.NULL_SPLIT else layout.uid_class(row.uid)


def build_examples(cfg: SFTConfig) -> list[SFTExample]:
    """The stage's training examples: the referring rows of the training split with their CoT (or
    their direct answers, for the distillation teacher), then the rows of the data mix."""
    from aurora_rl.data.mix import DataMix
    from aurora_rl.data.scene_facts import load_scene_facts
    from aurora_rl.prompts.answer_format import direct_answer
    from aurora_rl.prompts.cot_source import load_cot

    rows = training_rows(cfg.data)
    facts = load_scene_facts(Path(cfg.data.root))
    if cfg.direct_answer:
        return [SFTExample(r.uid, i, direct_answer(target_class(r, facts)), target_class(r, facts))
                for i, r in enumerate(rows)]
    mix = DataMix(cfg.mix, cfg.run.seed)
    left_out = mix.left_out(rows, facts)
    if left_out:
        print(f"[sft] {len(left_out)} of {len(rows)} training rows show an object of a class no row asks for: "
              "asked \"every object .\" instead (mix.skip_unasked_scenes)", flush=True)
    cot, report = load_cot(cfg.cot.source, [(r.uid, r.line) for r in rows if r.line not in left_out], facts=facts,
                           path=cfg.cot.path, max_tokens=cfg.cot.max_tokens)
    print(report.summary(), flush=True)
    examples = [SFTExample(r.uid, i, cot[r.line].answer, cot[r.line].target_class)
                for i, r in enumerate(rows) if r.line in cot]
    return examples + [listing_example(row) for row in mix.sft_rows(rows, facts, len(examples), left_out)]


def with_absolute_paths(cfg: SFTConfig) -> SFTConfig:
    """The same config with its local paths made absolute against the current folder.

    Ray Train runs each worker in a folder of its own, where a relative ``model.sam.path`` (or
    ``model.path``, ``data.root``, ``teacher_path``, ``cot.path``) would name nothing.
    """
    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    model = dataclasses.replace(cfg.model, path=absolute(cfg.model.path),
                                sam=dataclasses.replace(cfg.model.sam, path=absolute(cfg.model.sam.path)))
    return dataclasses.replace(cfg, model=model, data=dataclasses.replace(cfg.data, root=absolute(cfg.data.root)),
                               teacher_path=absolute(cfg.teacher_path),
                               cot=dataclasses.replace(cfg.cot, path=absolute(cfg.cot.path)))


def latest_complete_checkpoint(train_dir: Path, world_size: int) -> Path | None:
    """The newest checkpoint folder every rank finished writing (a killed run may leave a partial one).

    Complete = DeepSpeed's model state, one optimizer shard per rank, and the policy manifest.
    """
    for folder in sorted(train_dir.glob("checkpoint_*"), reverse=True):
        state = folder / "state"
        shards = list(state.glob("*optim_states.pt"))
        if ((state / "mp_rank_00_model_states.pt").exists() and len(shards) >= world_size
                and (folder / "policy" / "aurora_model.json").exists()):
            return folder
    return None


def initial_checkpoint(model: ModelConfig, data: DataConfig, corpus: list[str], folder: Path, seed: int) -> Path:
    """The starting weights: ``model.path`` if it is an aurora_rl checkpoint; a pretrained backbone
    loaded from ``model.path``; else a tiny random policy over the corpus's words, whose LLM is
    first trained on text over every class when ``model.tiny.text_pretrain.steps`` > 0."""
    from aurora_rl.data.synthetic import synthetic_words
    from aurora_rl.model.build import MediaShape
    from aurora_rl.model.checkpoint import MANIFEST, save_policy
    from aurora_rl.model.factory import build_policy
    from aurora_rl.model.tokenizer import build_word_tokenizer, words_of
    from aurora_rl.prompts.answer_format import REFLECT_TRIGGER, build_prompt
    from aurora_rl.prompts.scene_cot import COT_WORDS

    if model.path and (model.backbone == "tiny" or (Path(model.path) / MANIFEST).exists()):
        return Path(model.path)
    shape = MediaShape.for_run(data, model)
    tokenizer = None
    if model.backbone == "tiny":
        tokenizer = build_word_tokenizer(set(synthetic_words()) | set(COT_WORDS) | words_of(corpus)
                                         | words_of([REFLECT_TRIGGER, build_prompt("")]))
    policy, tokenizer = build_policy(model, shape, seed=seed, tokenizer=tokenizer)
    report = None
    if model.backbone == "tiny" and model.tiny.text_pretrain.steps > 0:
        from aurora_rl.model.text_pretrain import pretrain_text

        report = pretrain_text(policy.llm, tokenizer, model.tiny.text_pretrain, seed, data.num_frames)
    saved = save_policy(policy, tokenizer, model, shape, folder)
    if report is not None:
        (saved / "text_pretraining.json").write_text(json.dumps(report, indent=1))
    return saved


def sft_trainer(cfg: SFTConfig, resume: bool = False, stage: str = "sft", examples: list[SFTExample] | None = None,
                trial: bool = False):
    """The stage's ``TorchTrainer`` over its examples and initial checkpoint, and the run folder.

    ``trial``: one step on every worker, nothing saved, each worker's memory in the result's
    metrics (``aurora-rl preflight``).
    """
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from learner.checkpoints import refuse_foreign_folder
    from learner.sft_worker import sft_train_loop

    cfg = with_absolute_paths(cfg)
    out = run_dir(cfg).resolve()
    train_dir = out / "ray_train"
    if train_dir.exists() and not resume:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another run.name")
    out.mkdir(parents=True, exist_ok=True)
    if examples is None:
        examples = build_examples(cfg)
    examples_path = out / "examples.jsonl"
    examples_path.write_text("".join(json.dumps(dataclasses.asdict(e)) + "\n" for e in examples))
    init_dir = out / "init"
    if not (init_dir / "aurora_model.json").exists():
        init_dir = initial_checkpoint(cfg.model, cfg.data, [e.answer for e in examples], init_dir, cfg.run.seed)
    teacher = None
    if cfg.loss.distill > 0 and not cfg.direct_answer:
        teacher = cfg.teacher_path
    tr = cfg.trainer
    if resume and train_dir.exists():
        refuse_foreign_folder(out)
    resume_from = latest_complete_checkpoint(train_dir, tr.num_workers) if resume else None
    if resume and resume_from is None:
        print(f"[{stage}] --resume: no complete checkpoint under {train_dir}; starting from the beginning", flush=True)
    loop_config = {
        "cfg": cfg, "init_dir": str(Path(init_dir).resolve()), "teacher_dir": teacher,
        "examples": str(examples_path), "run_dir": str(out), "use_gpu": tr.use_gpu, "stage": stage,
        "resume_from": str(resume_from) if resume_from else None, "trial": trial,
    }
    print(f"[{stage}] {len(examples)} examples, {tr.num_workers} workers x batch {tr.batch_size_per_worker}, "
          f"ZeRO-{tr.deepspeed.zero_stage}; run folder {out}", flush=True)
    if resume_from:
        print(f"[{stage}] resuming from {resume_from}", flush=True)
    trainer = TorchTrainer(
        sft_train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=tr.num_workers, use_gpu=tr.use_gpu),
        torch_config=TorchConfig(backend="nccl" if tr.use_gpu else "gloo"),
        run_config=RunConfig(name="ray_train", storage_path=str(out), checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    return trainer, out


def run_sft(cfg: SFTConfig, resume: bool = False, stage: str = "sft", examples: list[SFTExample] | None = None) -> Path:
    """Train; returns the folder of the final policy checkpoint."""
    from aurora_rl.services.library_logs import LOG_DIR, logs_line
    from learner.checkpoints import replace_tree
    from learner.train_log import MetricsTail

    trainer, out = sft_trainer(cfg, resume, stage, examples)
    with MetricsTail(out / "metrics.jsonl", stage):  # the workers' output goes to <run>/logs: progress from here
        result = trainer.fit()
    print(logs_line(out / LOG_DIR, stage), flush=True)
    with result.checkpoint.as_directory() as d:  # replaced whole: the run never lacks a final checkpoint
        final = replace_tree(out / "checkpoint", lambda new: shutil.copytree(Path(d) / "policy", new))
    print(f"[{stage}] final checkpoint: {final}", flush=True)
    return final


def trial_sft(cfg: SFTConfig, stage: str = "sft", examples: list[SFTExample] | None = None) -> dict:
    """One step of the stage on every worker with nothing saved; the step's losses and
    ``memory``, each worker's ``memory_report`` in rank order (``aurora-rl preflight``)."""
    trainer, _ = sft_trainer(cfg, stage=stage, examples=examples, trial=True)
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:  # rank 0's: the gathered reports, no model
        return {**result.metrics, "memory": json.loads((Path(d) / "memory.json").read_text())}
