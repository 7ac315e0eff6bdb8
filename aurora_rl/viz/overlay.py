"""Mask overlays: a clip's frames in a grid with the predicted mask tinted, and a caption."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional

import numpy as np

TINT = np.array([1.0, 0.15, 0.6])  # magenta: visible on every synthetic object colour


def tint(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """frame [H, W, 3] float in [0, 1], mask [H, W] bool -> [H, W, 3] with the mask tinted."""
    out = frame.copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * TINT
    return out


def overlay_grid(frames: np.ndarray, masks: np.ndarray, caption: str, out_path: str | Path,
                 gt_masks: Optional[np.ndarray] = None, columns: int = 5, title: Optional[str] = None) -> Path:
    """Write a PNG: frames with masks tinted (ground-truth outline in white when given).

    Args:
        frames: [T, 3, H, W] float in [0, 1].
        masks: [T, H', W'] bool predicted masks (resized to the frame size if different).
        caption: text under the grid (the expression and the model's answer), wrapped.
        gt_masks: optional [T, H', W'] ground truth, drawn as an outline.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = frames.shape[0]
    rows = (t + columns - 1) // columns
    img = frames.transpose(0, 2, 3, 1)
    h, w = img.shape[1:3]
    masks = _resize_masks(masks, h, w)
    gt_masks = None if gt_masks is None else _resize_masks(gt_masks, h, w)
    if title:
        caption = f"{title}\n{caption}"
    width = 22 * columns  # characters of 8 pt monospace that fit across the grid
    lines = [w for para in caption.split("\n") for w in (textwrap.wrap(para, width) or [""])]
    text_h = 0.17 * len(lines) + 0.15
    fig = plt.figure(figsize=(2.0 * columns, 2.1 * rows + text_h), dpi=110)
    grid_h = 2.1 * rows / (2.1 * rows + text_h)
    for i in range(t):
        ax = fig.add_axes([(i % columns) / columns, 1 - grid_h * (i // columns + 1) / rows, 1 / columns * 0.97,
                           grid_h / rows * 0.9])
        ax.imshow(tint(img[i], masks[i]), interpolation="nearest")
        if masks[i].any():  # the outline keeps the prediction visible on objects close to the tint
            ax.contour(masks[i].astype(float), levels=[0.5], colors=[tuple(TINT)], linewidths=1.6)
        if gt_masks is not None and gt_masks[i].any():
            # black under white: the outline stays visible on white objects and on the dark background
            ax.contour(gt_masks[i].astype(float), levels=[0.5], colors="black", linewidths=2.2)
            ax.contour(gt_masks[i].astype(float), levels=[0.5], colors="white", linewidths=1.0)
        ax.set_title(f"frame {i}", fontsize=8)
        ax.axis("off")
    fig.text(0.01, 1 - grid_h - 0.01, "\n".join(lines), fontsize=8, va="top", family="monospace")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def _resize_masks(masks: np.ndarray, h: int, w: int) -> np.ndarray:
    masks = np.asarray(masks).astype(bool)
    if masks.shape[1:] == (h, w):
        return masks
    ys = (np.arange(h) * masks.shape[1] / h).astype(int)
    xs = (np.arange(w) * masks.shape[2] / w).astype(int)
    return masks[:, ys][:, :, xs]
