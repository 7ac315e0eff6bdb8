"""Run-length encoding of binary mask stacks (what rollout records carry between stages).

Layout: the mask stack ``[T, H, W]`` is flattened in C order; ``counts`` alternates run
lengths of 0s and 1s, starting with 0s (a leading 0-run may be empty, length 0). So an
all-empty stack is one run, and a typical object mask is a few hundred runs per frame.
"""

from __future__ import annotations

import numpy as np


def rle_encode(masks: np.ndarray) -> dict:
    """Encode a binary mask stack.

    Args:
        masks: bool or {0,1} array of shape [T, H, W] (any shape works; it is kept).
    Returns:
        {"shape": [T, H, W], "counts": list[int]} with sum(counts) == T*H*W.
    """
    flat = np.asarray(masks).reshape(-1).astype(bool)
    if flat.size == 0:
        return {"shape": list(masks.shape), "counts": []}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds)
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return {"shape": [int(s) for s in masks.shape], "counts": counts.astype(np.int64).tolist()}


def rle_check(rle: dict) -> tuple[tuple[int, ...], np.ndarray]:
    """Validate an encoding without expanding it: (shape, counts as int64).

    Raises ValueError when a count is negative or the counts do not add up to the shape (a
    corrupt record). Cheap (one pass over the runs, not the pixels), so a record can be
    checked wherever it is read and expanded only where its masks are used.
    """
    shape = tuple(int(s) for s in rle["shape"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    total = int(np.prod(shape)) if shape else 0
    if (counts < 0).any() or int(counts.sum()) != total:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, shape {shape} needs {total}")
    return shape, counts


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of ``rle_encode``: a bool array of ``rle["shape"]``.

    Raises ValueError when the counts do not add up to the shape (a corrupt record).
    """
    shape, counts = rle_check(rle)
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(shape)
