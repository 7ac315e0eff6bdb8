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
        """predictions_<split>.npz: keys [N] (as ``samples``), mask_probs float16 [N,T,M,M], gt_masks [N,T,M,M]."""
        path = self.eval_dir / f"predictions_{split}.npz"
        if not path.is_file():
            raise ReportError(f"{path}: missing (needed for the overlays of split {split})")
        with np.load(path) as z:
            return {"keys": z["keys"] if "keys" in z else z["uids"], "mask_probs": z["mask_probs"],
                    "gt_masks": z["gt_masks"]}

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
