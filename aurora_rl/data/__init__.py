"""Datasets: Ref-AVS Bench and AVSBench readers, audio features, validation, the synthetic benchmark.

``build_dataset(cfg, split)`` picks the reader for ``cfg.layout``; every reader yields
``ClipSample`` and raises ``DataError`` naming the file at fault.

Names are imported on first use, so that ``from aurora_rl.data.errors import DataError`` (the
CLI does it) does not pull in torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AVSBenchDataset": "avsbench_dataset",
    "ClipSample": "clip_sample",
    "collate_clips": "clip_sample",
    "DataError": "errors",
    "FailureLog": "load_failures",
    "LoadFailure": "load_failures",
    "TolerantDataset": "load_failures",
    "TooManyFailures": "load_failures",
    "RefAVSDataset": "refavs_dataset",
    "load_scene_facts": "scene_facts",
}

__all__ = [*_EXPORTS, "build_dataset", "layout_splits"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"aurora_rl.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'aurora_rl.data' has no attribute {name!r}")


def build_dataset(cfg, split: str, **overrides):
    """The reader for ``cfg.layout`` (a DataConfig) on ``split``; overrides go to the reader."""
    if cfg.layout == "refavs":
        from aurora_rl.data.refavs_dataset import RefAVSDataset

        return RefAVSDataset.from_config(cfg, split, **overrides)
    from aurora_rl.data.avsbench_dataset import AVSBenchDataset

    return AVSBenchDataset.from_config(cfg, split, **overrides)


def layout_splits(layout: str) -> tuple[str, ...]:
    """The splits the reader of ``layout`` ("refavs", "avsbench-s4", "avsbench-ms3") knows."""
    if layout == "refavs":
        from aurora_rl.data.refavs_layout import SPLITS
    else:
        from aurora_rl.data.avsbench_dataset import SPLITS
    return SPLITS
