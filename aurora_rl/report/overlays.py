"""Overlay grids: the same few held-out clips for every stage, masks over the frames, with the reasoning."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aurora_rl.data.media_io import evenly_spaced, open_image
from aurora_rl.data.refavs_layout import folder_vid, frame_path
from aurora_rl.report.eval_outputs import ReportError, StageEval
from aurora_rl.viz.overlay import overlay_grid

EXAMPLES_PER_SPLIT = {"test_s": 2, "test_u": 2, "test_n": 1}
LEGEND = "magenta: predicted mask (p > 0.5); white outline: ground truth"


@dataclass
class Example:
    split: str
    key: str  # the sample's key in every stage's evaluation (``uid@row``)
    uid: str
    expression: str
    kind: str


def choose_examples(evals: list[StageEval], per_split: dict[str, int] = EXAMPLES_PER_SPLIT) -> list[Example]:
    """The clips shown for every stage: per split, those whose IoU differs most across stages.

    Only samples every stage evaluated qualify; ties (e.g. a single stage) go by key, so the
    choice is deterministic.
    """
    common = set(evals[0].samples)
    for ev in evals[1:]:
        common &= set(ev.samples)
    examples = []
    for split, k in per_split.items():
        keys = [u for u in common if evals[0].samples[u]["split"] == split]
        spread = {u: np.ptp([ev.samples[u]["iou"] for ev in evals]) for u in keys}
        for u in sorted(keys, key=lambda u: (-spread[u], u))[:k]:
            s = evals[0].samples[u]
            examples.append(Example(split, u, s["uid"], s["expression"], s.get("kind", "")))
    return examples


def load_frames(data_root: Path, uid: str, count: int) -> np.ndarray:
    """[count, 3, H, W] float in [0, 1] at the files' own size, spread over the clip like the model's input."""
    folder = frame_path(data_root, folder_vid(uid), 0).parent
    available = len(list(folder.glob("*.jpg")))
    if available == 0:
        raise ReportError(f"{folder}: no frames for {uid}")
    frames = []
    for i in evenly_spaced(available, count):
        img = open_image(frame_path(data_root, folder_vid(uid), i)).convert("RGB")
        frames.append((np.asarray(img, dtype=np.float32) / 255.0).transpose(2, 0, 1))
    return np.stack(frames)


def caption(stage: str, sample: dict) -> str:
    truth = sample["gt_class"] or "nothing (null expression)"
    failure = sample["failure"] or "none"
    return (f"expression: {sample['expression']}\n"
            f"answer: {sample['text']}\n"
            f"IoU {sample['iou']:.3f} | predicted class: {sample['target_class'] or '- (none parsed)'} | true class: {truth} | "
            f"failure: {failure}\n{LEGEND}")


def safe_name(uid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", uid)


def render_overlays(names: list[str], evals: list[StageEval], examples: list[Example], data_root: Path,
                    out_dir: Path) -> dict[str, dict[str, Path]]:
    """Write out_dir/<stage>/<key>.png for every stage and example -> {key: {stage: path}}."""
    paths: dict[str, dict[str, Path]] = {e.key: {} for e in examples}
    frames_cache: dict[str, np.ndarray] = {}
    for name, ev in zip(names, evals):
        for split in sorted({e.split for e in examples}):
            pred = ev.predictions(split)
            index = {str(u): i for i, u in enumerate(pred["keys"])}
            for e in (e for e in examples if e.split == split):
                if e.key not in index:
                    raise ReportError(f"{ev.eval_dir}/masks_{split}.jsonl: no prediction for {e.key}")
                masks, gt = pred["masks"][index[e.key]], pred["gt"][index[e.key]]
                if e.uid not in frames_cache:
                    frames_cache[e.uid] = load_frames(data_root, e.uid, masks.shape[0])
                paths[e.key][name] = overlay_grid(
                    frames_cache[e.uid], masks, caption(name, ev.samples[e.key]),
                    out_dir / safe_name(name) / f"{safe_name(e.key)}.png", gt_masks=gt,
                    columns=min(5, masks.shape[0]), title=f"stage {name} | {split} | {e.key}")
    return paths
