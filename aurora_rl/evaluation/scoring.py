"""Scoring and saving an evaluation's predictions as they arrive (no Ray: ``actors/eval_pool.py``
makes them).

``EvaluationWriter`` takes the predictions of a split chunk by chunk, in row order, and keeps
none of them: each is added to the official metrics (``aurora_rl.metrics``, which accumulate),
counted (class accuracy, format, reflection, failure kinds) and written out at once:
``samples.jsonl`` (reasoning, class, IoU, failure kind per sample) and ``masks_<split>.jsonl``
(the predicted mask at p > 0.5 and the ground truth, run-length encoded, for the overlays). Memory
stays flat however many clips a split has. ``results.json`` and ``results.md`` hold the tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from aurora_rl.config.schema import MetricsConfig
from aurora_rl.evaluation.sample_scores import failure_kind, sample_iou
from aurora_rl.mask_rle import rle_encode
from aurora_rl.metrics.refavs_metrics import OFFICIAL, MetricConvention, RefAVSEvaluator
from aurora_rl.prompts.answer_format import NULL_CLASS, parse_answer

SAVED_MASK_THRESHOLD = 0.5  # the saved masks (and the report's overlays) are p > this


def sample_key(prediction: dict) -> str:
    """A prediction's key in saved evaluations: ``uid@row``, since a uid can occur on more than one
    row of the official metadata (the row is the sample's metadata line)."""
    return f"{prediction['uid']}@{prediction['row']}"


def probs_to_logits(probs: np.ndarray) -> np.ndarray:
    """Stored float16 probabilities back to logits, for conventions defined on logits.

    Clipping to [1e-4, 1 - 1e-4] bounds the logits to +-9.2; every threshold of both
    conventions lies well inside that range, so no decision changes.
    """
    p = np.clip(probs.astype(np.float32), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class _Tally:
    """The counts of one split besides J / F / S."""

    def __init__(self):
        self.n = self.correct = self.known = self.well_formed = self.reflective = 0
        self.failures: dict[str, int] = {}

    def add(self, p: dict, parsed, kind: Optional[str]) -> None:
        """One prediction, its parsed answer and its failure kind (None: none)."""
        self.n += 1
        self.well_formed += parsed.well_formed
        self.reflective += parsed.attempts > 1
        if p["gt_class"] is not None or p["is_null"]:
            self.known += 1
            self.correct += parsed.target_class == (p["gt_class"] or NULL_CLASS)
        if kind:
            self.failures[kind] = self.failures.get(kind, 0) + 1

    def result(self) -> dict:
        nan = float("nan")
        return {"class_acc": self.correct / self.known if self.known else nan,
                "format_rate": self.well_formed / self.n if self.n else nan,
                "reflect_rate": self.reflective / self.n if self.n else nan, "failures": self.failures}


class EvaluationWriter:
    """Official metrics per split (+ Mix), class accuracy, format rate, the share of reflective
    answers (more than one reasoning path) and failure counts, accumulated over ``add`` calls;
    with ``out_dir``, every prediction written there as it comes. Use as a context manager;
    ``results()`` gives the summary."""

    def __init__(self, metrics: MetricsConfig, out_dir: Optional[str | Path] = None):
        self.convention = MetricConvention.from_config(metrics)
        self.evaluator = RefAVSEvaluator(self.convention)
        self.tallies: dict[str, _Tally] = {}
        self.skipped: dict[str, list[dict]] = {}  # per split: {"key", "error"} of each clip skipped
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.files: dict[str, object] = {}
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.files["samples"] = (self.out_dir / "samples.jsonl").open("w")

    def __enter__(self) -> "EvaluationWriter":
        return self

    def __exit__(self, *exc) -> None:
        for f in self.files.values():
            f.close()

    def add(self, split: str, predictions: list[dict]) -> None:
        """Predictions of ``split``, in row order (the official groups of clips follow it)."""
        tally = self.tallies.setdefault(split, _Tally())
        c = self.convention
        official = (c.j_threshold, c.s_threshold) == (OFFICIAL.j_threshold, OFFICIAL.s_threshold)
        for p in predictions:
            if "skipped" in p:  # a clip that could not be read (evaluation/clip_loading.py)
                self.skipped.setdefault(split, []).append({"key": sample_key(p), "error": p["skipped"]})
                continue
            parsed = parse_answer(p["text"])
            self.evaluator.add(split, probs_to_logits(p["mask_probs"]), p["gt_masks"])
            kind = failure_kind(p, parsed, c.j_threshold, c.s_threshold)
            tally.add(p, parsed, kind)
            if self.out_dir is not None:  # samples.jsonl judges at the official thresholds
                self._write(split, p, parsed,
                            kind if official else failure_kind(p, parsed, OFFICIAL.j_threshold, OFFICIAL.s_threshold))

    def _write(self, split: str, p: dict, parsed, failure: Optional[str]) -> None:
        self.files["samples"].write(json.dumps({
            "key": sample_key(p), "uid": p["uid"], "row": p["row"], "split": split,
            "expression": p["expression"], "kind": p["kind"],
            "text": p["text"], "target_class": parsed.target_class, "gt_class": p["gt_class"],
            "iou": sample_iou(p["mask_probs"], p["gt_masks"]), "problems": parsed.problems,
            "failure": failure,
        }) + "\n")
        if split not in self.files:
            self.files[split] = (self.out_dir / f"masks_{split}.jsonl").open("w")
        self.files[split].write(json.dumps({
            "key": sample_key(p),
            "mask": rle_encode(p["mask_probs"].astype(np.float32) > SAVED_MASK_THRESHOLD),
            "gt": rle_encode(np.asarray(p["gt_masks"]) > 0),
        }) + "\n")

    def results(self) -> dict:
        """{split: metrics, counts and, if any clip was skipped, "skipped": [{"key", "error"}], ...,
        "mix": ...}; a split of no clip read has {"clips": 0} and NaN rates."""
        results = self.evaluator.summary()
        for split, tally in self.tallies.items():
            results.setdefault(split, {"clips": 0}).update(tally.result())
        for split, skipped in self.skipped.items():
            results[split]["skipped"] = skipped
        return results


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else (f"{v:.4f}" if isinstance(v, float) else str(v))


def results_table(results: dict, baseline: dict | None = None) -> str:
    """Markdown table: one row per split; with ``baseline``, the difference per metric. Clips
    skipped for a read error are listed under it, each with its split, key and error."""
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
    skipped = [(split, s) for split, row in results.items() if isinstance(row, dict) for s in row.get("skipped", [])]
    if skipped:
        lines.append(f"\n{len(skipped)} clip(s) skipped, not read (--on-bad-clip skip):")
        lines += [f"- {split} {s['key']}: {s['error']}" for split, s in skipped]
    return "\n".join(lines)


def write_tables(results: dict, out_dir: Path, title: str, baseline: dict | None = None) -> None:
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(f"# {title}\n\n{results_table(results, baseline)}\n")
