"""Stage 2: corrective reflective-style SFT.

    aurora-rl train reflect --config configs/tiny/reflect.yaml

1. Mine: Ray actors run the stage-1 checkpoint (``model.path``) over the training split
   with vLLM sampling + the [SEG] pass (``actors/eval_pool.py``), G completions per clip.
2. Select real failures: a completion whose target class is wrong, or whose mean mask IoU
   (the IoU reward's definition) is below ``failure_iou``. At most one per row (sample).
3. Build reflective answers: the model's own wrong reasoning (its final "it is [SEG] ."
   removed), the trigger ("wait , let me reconsider ."), then a corrected path from the
   corrector source (scene facts, a JSONL, or a served model's JSONL).
4. Fine-tune from the stage-1 checkpoint on them, mixed with stage-1 examples so that
   reflective samples are ``mix_ratio`` of the data (the same Ray Train job as stage 1).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection
from pathlib import Path

import numpy as np

from aurora_rl.config.schema import ReflectConfig, SFTConfig
from aurora_rl.prompts.answer_format import NULL_CLASS, normalize, parse_answer
from learner.sft_data import SFTExample

_SEG_TAIL = re.compile(r"\s*it is\s*\[SEG\]\s*\.?\s*$", re.IGNORECASE)


def failure_reason(pred: dict, failure_iou: float, mask_threshold: float = 0.5) -> str | None:
    """Why a completion counts as a failure ("wrong class", "low IoU") or None if it does not."""
    from rewards.reward_functions import iou_reward

    parsed = parse_answer(pred["text"])
    truth = pred["gt_class"] or NULL_CLASS
    if pred["gt_class"] is not None or pred["is_null"]:
        if parsed.target_class != truth:
            return "wrong class"
    masks = pred["mask_probs"].astype(np.float32) if pred["has_seg"] and parsed.seg_count else None
    if iou_reward(masks, pred["gt_masks"], mask_threshold) < failure_iou:
        return "low IoU"
    return None


def reflective_answer(failed_text: str, corrected_answer: str, trigger: str) -> str:
    """The wrong attempt (without its closing "it is [SEG] ."), the trigger, the corrected path."""
    attempt = _SEG_TAIL.sub("", normalize(failed_text)).replace("[SEG]", "").strip()
    return " ".join(part for part in (attempt, normalize(trigger), corrected_answer) if part)


def select_failures(preds: list[dict]) -> list[tuple[dict, str]]:
    """The first failing completion of each row (sample), with its reason, in row order; the
    predictions are ``judged`` ones (each carries its reason)."""
    chosen: dict[int, tuple[dict, str]] = {}
    for p in sorted(preds, key=lambda p: (p["index"], p.get("sample", 0))):
        if p["row"] not in chosen and p["reason"]:
            chosen[p["row"]] = (p, p["reason"])
    return list(chosen.values())


def build_reflective_examples(failures: list[tuple[dict, str]], corrections: dict, trigger: str) -> list[SFTExample]:
    out = []
    for pred, _ in failures:
        entry = corrections.get(pred["row"])
        if entry is None:
            continue
        answer = reflective_answer(pred["text"], entry.answer, trigger)
        out.append(SFTExample(pred["uid"], int(pred["index"]), answer, entry.target_class))
    return out


def mix(reflective: list[SFTExample], base: list[SFTExample], ratio: float, seed: int) -> list[SFTExample]:
    """All reflective examples plus enough base examples that reflective ones are ``ratio`` of the mix."""
    if not reflective:
        return list(base)
    n_base = len(base) if ratio <= 0 else min(len(base), round(len(reflective) * (1 - ratio) / ratio))
    picked = np.random.default_rng(seed).choice(len(base), n_base, replace=False) if n_base else []
    return reflective + [base[i] for i in sorted(picked)]


def mine(cfg: ReflectConfig, out_dir: Path, log=print, skip: Collection[int] = ()) -> list[dict]:
    """Sampled completions for every training row but those in ``skip`` (metadata lines), each
    with its failure reason (None: not a failure). Masks are judged as they arrive and dropped:
    what is kept is text, so memory stays flat however many clips are mined."""
    from actors.eval_pool import EvalPool
    from aurora_rl.data.refavs_dataset import RefAVSDataset

    rows = RefAVSDataset.from_config(cfg.data, cfg.data.train_split).rows
    indices = [i for i, row in enumerate(rows) if row.line not in skip]
    k = cfg.rollout.num_actors
    kept = []
    with EvalPool(cfg.model.path, cfg.data, out_dir, k, cfg.rollout.kv_cache_gib, cfg.rollout.sampling.max_new_tokens,
                  name="miner", label="reflect", gpus_per_actor=cfg.mining_gpus_per_actor) as pool:
        left_out = f" ({len(rows) - len(indices)} left out)" if len(indices) < len(rows) else ""
        log(f"[reflect] sampling {cfg.rollout.sampling.group_size} completions for each of {len(indices)} training "
            f"clips{left_out} on {k} actor(s)")
        for part in pool.stream(cfg.data.train_split, indices, log, "reflect", cfg.rollout.sampling, cfg.run.seed):
            kept += [judged(p, cfg.failure_iou) for p in part]
    return kept


def judged(pred: dict, failure_iou: float) -> dict:
    """A mined completion without its masks, with its failure reason (None: not a failure)."""
    light = {k: v for k, v in pred.items() if k not in ("mask_probs", "gt_masks", "mask_valid")}
    light["reason"] = failure_reason(pred, failure_iou)
    return light


def sft_config(cfg: ReflectConfig) -> SFTConfig:
    """The fine-tune of stage 2 as an SFT job: stage-1 examples from the corrector's CoT, no teacher."""
    return SFTConfig(stage="sft", run=cfg.run, services=cfg.services, data=cfg.data, model=cfg.model,
                     trainer=cfg.trainer, loss=cfg.loss, cot=cfg.corrector, mix=cfg.mix, teacher_path=None)


def run_reflect(cfg: ReflectConfig, resume: bool = False, log=print) -> Path:
    from aurora_rl.data.mix import DataMix
    from aurora_rl.data.scene_facts import load_scene_facts
    from aurora_rl.model.checkpoint import check_data_matches
    from aurora_rl.prompts.cot_source import load_cot
    from learner.sft_job import build_examples, run_dir, run_sft, training_rows

    check_data_matches(cfg.model.path, cfg.data, f"reflect run {cfg.run.name}")
    out = run_dir(cfg).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sft_cfg = sft_config(cfg)
    mixed_path = out / "reflect_examples.jsonl"
    if resume and mixed_path.exists():
        examples = [SFTExample(**json.loads(line)) for line in mixed_path.read_text().splitlines()]
        return run_sft(sft_cfg, resume=True, stage="reflect", examples=examples)
    facts = load_scene_facts(Path(cfg.data.root))
    # as stage 1's referring rows: no failure mined from the rows the mix leaves out, so none sampled
    skip = DataMix(cfg.mix, cfg.run.seed).left_out(training_rows(cfg.data), facts)
    preds = mine(cfg, out, log, skip)
    failures = select_failures(preds)
    corrections, report = load_cot(cfg.corrector.source, [(p["uid"], p["row"]) for p, _ in failures], facts=facts,
                                   path=cfg.corrector.path, max_tokens=cfg.corrector.max_tokens)
    reflective = build_reflective_examples(failures, corrections, cfg.trigger)
    base = build_examples(sft_cfg)
    examples = mix(reflective, base, cfg.mix_ratio, cfg.run.seed)
    reasons: dict[str, int] = {}
    for _, reason in failures:
        reasons[reason] = reasons.get(reason, 0) + 1
    summary = {"completions": len(preds), "clips": len({p["row"] for p in preds}), "failures": len(failures),
               "by_reason": reasons, "reflective_examples": len(reflective), "base_examples": len(examples) - len(reflective)}
    (out / "mining_summary.json").write_text(json.dumps(summary, indent=2))
    with (out / "failures.jsonl").open("w") as f:
        for pred, reason in failures:
            f.write(json.dumps({"uid": pred["uid"], "row": pred["row"], "index": pred["index"],
                                "sample": pred.get("sample", 0),
                                "reason": reason, "text": pred["text"], "gt_class": pred["gt_class"]}) + "\n")
    mixed_path.write_text("".join(json.dumps(dataclasses.asdict(e)) + "\n" for e in examples))
    log(f"[reflect] {summary['failures']} failures among {summary['clips']} clips {reasons}; "
        f"{len(reflective)} reflective + {summary['base_examples']} stage-1 examples\n{report.summary()}")
    return run_sft(sft_cfg, resume=resume, stage="reflect", examples=examples)
