"""Reading one evaluation folder, as ``aurora_rl.evaluation.scoring`` writes it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ReportError(RuntimeError):
    """An input of the report is missing or malformed; the message names the file."""


@dataclass
class StageEval:
    """results: results.json as written ({split: {...}, "mix": {"J", "F"}}).
    samples: {key: samples.jsonl row} (key, uid, row, split, expression, kind, text, target_class,
        gt_class, iou, problems, failure); the key is ``uid@row`` (uids repeat in the official
        metadata), or the uid in a folder written before rows were recorded.
    """

    results: dict
    samples: dict[str, dict]
    eval_dir: Path

    def predictions(self, split: str) -> dict[str, np.ndarray]:
        """The saved masks of ``split``: keys [N] (as ``samples``), masks bool [N,T,M,M] (predicted,
        p > 0.5), gt bool [N,T,M,M]; from ``masks_<split>.jsonl`` (run-length encoded), or from
        ``predictions_<split>.npz`` (mask probabilities) in a folder written before it."""
        from aurora_rl.mask_rle import rle_decode

        path = self.eval_dir / f"masks_{split}.jsonl"
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            return {"keys": np.array([r["key"] for r in rows]),
                    "masks": np.stack([rle_decode(r["mask"]) for r in rows]).astype(bool),
                    "gt": np.stack([rle_decode(r["gt"]) for r in rows]).astype(bool)}
        old = self.eval_dir / f"predictions_{split}.npz"
        if not old.is_file():
            raise ReportError(f"{path}: missing (needed for the overlays of split {split})")
        with np.load(old) as z:
            return {"keys": z["keys"] if "keys" in z else z["uids"], "masks": z["mask_probs"].astype(np.float32) > 0.5,
                    "gt": z["gt_masks"] > 0}

    def split_samples(self, splits) -> list[dict]:
        return [s for s in self.samples.values() if s["split"] in splits]


def load_stage_eval(eval_dir: str | Path) -> StageEval:
    eval_dir = Path(eval_dir)
    results_path = eval_dir / "results.json"
    samples_path = eval_dir / "samples.jsonl"
    for path in (results_path, samples_path):
        if not path.is_file():
            raise ReportError(f"{path}: missing (is {eval_dir} an evaluation output folder?)")
    try:
        results = json.loads(results_path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{results_path}: not valid JSON ({e})") from None
    samples = {}
    for n, line in enumerate(samples_path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ReportError(f"{samples_path}: line {n} is not valid JSON ({e})") from None
            samples[row.get("key", row["uid"])] = row
    return StageEval(results, samples, eval_dir)


def number(value) -> float:
    """A results.json cell as a float; missing or null -> NaN."""
    if value is None:
        return math.nan
    return float(value)
