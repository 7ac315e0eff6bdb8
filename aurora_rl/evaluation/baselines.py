"""A reference predictor that needs no model, scored like any checkpoint.

``largest object``: whatever the expression says and whatever sounds, segment the largest
object in each frame — the largest connected region that stands out from the background
(any channel brighter than ``threshold``; one 3x3 closing joins striped or dotted textures).
It shows how much a model gains by actually reading the expression, the audio and the picture.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from aurora_rl.config.schema import DataConfig
from aurora_rl.evaluation.clip_loading import OnBadClip, load_clips


def largest_regions(frames: np.ndarray, threshold: float = 0.35) -> np.ndarray:
    """[T, 3, H, W] frames in [0, 1] -> [T, H, W] bool: the largest foreground region of each frame.

    Connected components by label propagation: every foreground pixel starts with its own
    label and repeatedly takes the largest label among its 4-neighbours until nothing changes.
    """
    fg = torch.from_numpy(frames).max(dim=1).values > threshold  # [T, H, W]
    fg = F.max_pool2d(fg[:, None].float(), 3, 1, 1)[:, 0] > 0  # close small gaps (stripes, dots)
    t, h, w = fg.shape
    labels = torch.where(fg, torch.arange(1, h * w + 1, dtype=torch.float32).expand(t, h * w).view(t, h, w),
                         torch.zeros(()))
    while True:
        padded = F.pad(labels, (1, 1, 1, 1))
        neighbours = torch.stack([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2],
                                  padded[:, 1:-1, 2:], labels])
        grown = neighbours.max(dim=0).values * fg
        if torch.equal(grown, labels):
            break
        labels = grown
    out = np.zeros((t, h, w), dtype=bool)
    for i in range(t):
        values, counts = torch.unique(labels[i][labels[i] > 0], return_counts=True)
        if len(values):
            out[i] = (labels[i] == values[counts.argmax()]).numpy()
    return out


def largest_object_predictions(data: DataConfig, split: str, on_bad_clip: OnBadClip = "fail") -> list[dict]:
    """Predictions in the evaluation format (mask probabilities in {0, 1}) for every row of ``split``;
    ``on_bad_clip`` "skip": a skip record for each row that cannot be read (clip_loading.py)."""
    from aurora_rl.data.refavs_dataset import RefAVSDataset
    from aurora_rl.prompts.answer_format import compose_answer

    dataset = RefAVSDataset.from_config(data, split)
    out = []
    for index in range(len(dataset)):
        _, clips, skipped = load_clips(dataset, [index], split, on_bad_clip)  # one clip's frames held at a time
        out += skipped
        if not clips:
            continue
        clip = clips[0]
        masks = largest_regions(clip.frames)
        if masks.shape[1:] != clip.masks.shape[1:]:
            masks = F.interpolate(torch.from_numpy(masks)[:, None].float(), size=clip.masks.shape[1:],
                                  mode="nearest")[:, 0].numpy() > 0.5
        out.append({
            "index": index, "uid": clip.uid, "row": clip.row, "split": split, "expression": clip.expression,
            "text": compose_answer("-", "-", "-", "largest"), "has_seg": True,
            "mask_probs": masks.astype(np.float16), "gt_masks": clip.masks, "mask_valid": clip.mask_valid,
            "is_null": clip.is_null, "gt_class": None if clip.facts is None else clip.facts.get("target_class"),
            "kind": None if clip.facts is None else clip.facts.get("expression_kind"),
        })
    return out
