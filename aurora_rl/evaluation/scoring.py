"""Scoring and saving an evaluation's predictions (no Ray: ``actors/eval_pool.py`` makes them).

Predictions are scored with the official metrics (``aurora_rl.metrics``) and saved: per-split
``predictions_<split>.npz`` (mask probabilities and ground truth), ``samples.jsonl``
(reasoning, class, IoU, failure kind per sample), ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aurora_rl.config.schema import MetricsConfig
from aurora_rl.evaluation.sample_scores import failure_kind, sample_iou
from aurora_rl.metrics.refavs_metrics import OFFICIAL, MetricConvention, RefAVSEvaluator
from aurora_rl.prompts.answer_format import NULL_CLASS, parse_answer


def sample_key(prediction: dict) -> str:
    """A prediction's key in saved evaluations: ``uid@row``, since a uid can occur on more than one
    row of the official metadata (the row is the sample's metadata line)."""
    return f"{prediction['uid']}@{prediction['row']}"


def score_predictions(predictions: dict[str, list[dict]], metrics: MetricsConfig) -> dict:
    """Official metrics per split (+ Mix), class accuracy, format rate, the share of reflective
    answers (more than one reasoning path) and failure counts."""
    convention = MetricConvention.from_config(metrics)
    evaluator = RefAVSEvaluator(convention)
    extra: dict[str, dict] = {}
    for split, preds in predictions.items():
        correct = known = well_formed = reflective = 0
        failures: dict[str, int] = {}
        for p in preds:
            evaluator.add(split, probs_to_logits(p["mask_probs"]), p["gt_masks"])
            parsed = parse_answer(p["text"])
            well_formed += parsed.well_formed
            reflective += parsed.attempts > 1
            if p["gt_class"] is not None or p["is_null"]:
                known += 1
                correct += parsed.target_class == (p["gt_class"] or NULL_CLASS)
            kind = failure_kind(p, parsed, convention.j_threshold, convention.s_threshold)
            if kind:
                failures[kind] = failures.get(kind, 0) + 1
        extra[split] = {
            "class_acc": correct / known if known else float("nan"),
            "format_rate": well_formed / len(preds) if preds else float("nan"),
            "reflect_rate": reflective / len(preds) if preds else float("nan"),
            "failures": failures,
        }
    results = evaluator.summary()
    for split, values in extra.items():
        results[split].update(values)
    return results


def probs_to_logits(probs: np.ndarray) -> np.ndarray:
    """Stored float16 probabilities back to logits, for conventions defined on logits.

    Clipping to [1e-4, 1 - 1e-4] bounds the logits to +-9.2; every threshold of both
    conventions lies well inside that range, so no decision changes.
    """
    p = np.clip(probs.astype(np.float32), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def save_predictions(predictions: dict[str, list[dict]], out_dir: Path) -> None:
    with (out_dir / "samples.jsonl").open("w") as f:
        for split, preds in predictions.items():
            np.savez_compressed(out_dir / f"predictions_{split}.npz",
                                uids=np.array([p["uid"] for p in preds]),
                                keys=np.array([sample_key(p) for p in preds]),
                                mask_probs=np.stack([p["mask_probs"] for p in preds]),
                                gt_masks=np.stack([p["gt_masks"] for p in preds]))
            for p in preds:
                parsed = parse_answer(p["text"])
                f.write(json.dumps({
                    "key": sample_key(p), "uid": p["uid"], "row": p["row"], "split": split,
                    "expression": p["expression"], "kind": p["kind"],
                    "text": p["text"], "target_class": parsed.target_class, "gt_class": p["gt_class"],
                    "iou": sample_iou(p["mask_probs"], p["gt_masks"]), "problems": parsed.problems,
                    "failure": failure_kind(p, parsed, OFFICIAL.j_threshold, OFFICIAL.s_threshold),
                }) + "\n")


def load_saved_predictions(out_dir: str | Path, splits: list[str]) -> dict[str, dict[str, np.ndarray]]:
    out_dir = Path(out_dir)
    return {s: dict(np.load(out_dir / f"predictions_{s}.npz")) for s in splits}


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else (f"{v:.4f}" if isinstance(v, float) else str(v))


def results_table(results: dict, baseline: dict | None = None) -> str:
    """Markdown table: one row per split; with ``baseline``, the difference per metric."""
    cols = ["J", "F", "S", "class_acc", "format_rate", "reflect_rate", "clips"]
    head = "| split | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for split in [s for s in results if s != "mix"] + ["mix"]:
        row = results.get(split, {})
        cells = []
        for c in cols:
            v = row.get(c)
            cell = _fmt(v)
            if baseline is not None and isinstance(v, float) and isinstance(baseline.get(split, {}).get(c), float):
                cell += f" ({v - baseline[split][c]:+.4f})"
            cells.append(cell)
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tables(results: dict, out_dir: Path, title: str, baseline: dict | None = None) -> None:
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(f"# {title}\n\n{results_table(results, baseline)}\n")
