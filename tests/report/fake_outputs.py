"""Fixtures for report tests: evaluation folders and metrics files in the formats the code writes.

Predictions are made from the real ground-truth masks of a small synthetic benchmark, one chosen
outcome per sample; results.json holds numbers the test picks, so a table cell can be traced
back to exactly one fixture number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aurora_rl.data.media_io import evenly_spaced, mask_to_array, open_image
from aurora_rl.data.refavs_layout import NUM_FRAMES, mask_path, read_metadata, uid_class
from aurora_rl.evaluation.sample_scores import sample_iou
from aurora_rl.prompts.answer_format import NULL_CLASS, compose_answer, parse_answer

FRAMES = 4
MASK = 32
HELD_OUT_SPLITS = ("val", "test_s", "test_u", "test_n")


def held_out_rows(data_root: Path) -> dict[str, list]:
    rows = read_metadata(data_root)
    return {s: [r for r in rows if r.split == s] for s in HELD_OUT_SPLITS}


def gt_masks(data_root: Path, row) -> np.ndarray:
    return np.stack([mask_to_array(open_image(mask_path(data_root, row.vid, row.fid, i)), MASK)
                     for i in evenly_spaced(NUM_FRAMES, FRAMES)])


def prediction(outcome: str, gt: np.ndarray, gt_class):
    """(mask probabilities [T, M, M], answer text) for one chosen outcome."""
    probs = np.full(gt.shape, 0.05, np.float32)
    said = gt_class
    if outcome == "fine":
        probs = np.where(gt > 0, 0.95, 0.05)
        said = gt_class if gt_class else NULL_CLASS
    elif outcome == "right class but poor mask":
        probs = np.where(np.roll(gt, MASK // 3, axis=-1) > 0, 0.9, 0.05)
    elif outcome == "wrong class":
        probs = np.where(np.roll(gt, MASK // 2, axis=-1) > 0, 0.9, 0.05)
        said = "violin" if gt_class != "violin" else "drum"
    elif outcome == "false positive on null":
        probs[:, 4:20, 4:20] = 0.9
        said = "drum"
    elif outcome == "said nothing on a real target":
        said = NULL_CLASS
    text = (compose_answer("three objects", "one sounds", "the reference names one", said)
            if outcome != "malformed answer" else "step 1 : i see three objects step 1 : step 1 :")
    return probs.astype(np.float16), text


def write_fake_eval(eval_dir: Path, data_root: Path, results: dict, outcomes: dict[str, str] | None = None,
                    default: str = "fine") -> Path:
    """An evaluation folder as written before samples had rows and masks were run-length encoded:
    results.json (``results`` as given), samples.jsonl keyed by uid, predictions_<split>.npz (probabilities)."""
    eval_dir.mkdir(parents=True, exist_ok=True)
    outcomes = outcomes or {}
    lines = []
    for split, rows in held_out_rows(data_root).items():
        uids, probs_all, gts = [], [], []
        for row in rows:
            gt = gt_masks(data_root, row)
            gt_class = None if split == "test_n" else uid_class(row.uid)
            outcome = outcomes.get(row.uid, default)
            probs, text = prediction(outcome, gt, gt_class)
            parsed = parse_answer(text)
            lines.append(json.dumps({
                "uid": row.uid, "split": split, "expression": row.exp, "kind": "visual", "text": text,
                "target_class": parsed.target_class, "gt_class": gt_class, "iou": sample_iou(probs, gt),
                "problems": parsed.problems, "failure": None if outcome == "fine" else outcome}))
            uids.append(row.uid)
            probs_all.append(probs)
            gts.append(gt)
        np.savez_compressed(eval_dir / f"predictions_{split}.npz", uids=np.array(uids),
                            mask_probs=np.stack(probs_all), gt_masks=np.stack(gts))
    (eval_dir / "samples.jsonl").write_text("\n".join(lines) + "\n")
    (eval_dir / "results.json").write_text(json.dumps(results, indent=2))
    (eval_dir / "results.md").write_text("# fake\n")
    return eval_dir


def split_results(j_s: float, j_u: float, *, s_null: float, class_acc: float = 1.0, format_rate: float = 1.0) -> dict:
    """A results.json in the evaluator's shape; F is J + 0.05 so J and F cells are told apart."""
    def held(j):
        return {"J": j, "F": j + 0.05, "clips": 3, "class_acc": class_acc, "format_rate": format_rate, "failures": {}}

    return {"val": held(round(j_s + 0.01, 4)), "test_s": held(j_s), "test_u": held(j_u),
            "test_n": {"S": s_null, "clips": 1, "class_acc": class_acc, "format_rate": format_rate, "failures": {}},
            "mix": {"J": (j_s + j_u) / 2, "F": (j_s + j_u) / 2 + 0.05}}


def write_sft_metrics(path: Path, steps: int = 30, resume_from: int | None = None) -> Path:
    """SFT metrics.jsonl; with ``resume_from`` the steps from there on are written again (a resume),
    the repeated rows carrying total = 100 + step so a test can tell which copy was kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for s in range(1, steps + 1):
        ce = 3.0 * np.exp(-s / 10) + 0.1 * rng.random()
        rows.append({"step": s, "time": 1.7e9 + s, "ce": ce, "bce": 0.5 / s, "dice": 0.8 - 0.01 * s, "distill": 0.1,
                     "total": ce + 1.3, "grad_norm": 1.0 + rng.random(), "lr": 1e-4, "samples_per_s": 8.0})
    if resume_from is not None:
        rows += [dict(r, total=100.0 + r["step"]) for r in rows if r["step"] >= resume_from]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_grpo_metrics(path: Path, steps: int = 25) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    rows = []
    for s in range(1, steps + 1):
        fmt, iou, cls = min(1.0, 0.6 + 0.02 * s), 0.3 + 0.01 * s + 0.05 * rng.random(), 0.5 + 0.01 * s
        rows.append({"step": s, "time": 1.7e9 + s, "reward": fmt + iou + cls, "reward_format": fmt, "reward_iou": iou,
                     "reward_cls": cls, "group_reward_std": 0.4 - 0.01 * s, "loss": 0.1 * rng.random(),
                     "policy_loss": 0.05 * rng.random(), "kl": 0.001 * s, "clip_fraction": 0.02 * rng.random(),
                     "mask_bce": 0.3, "mask_dice": 0.5, "grad_norm": 0.5, "tokens_per_s": 900.0,
                     "time_rollout_s": 1.0, "time_learn_s": 0.5})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
