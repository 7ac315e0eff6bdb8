"""Datasets: Ref-AVS Bench and AVSBench readers, audio features, validation, the synthetic benchmark.

``build_dataset(cfg, split)`` picks the reader for ``cfg.layout``; every reader yields
``ClipSample`` and raises ``DataError`` naming the file at fault.
"""

from __future__ import annotations

from aurora_rl.data.avsbench_dataset import AVSBenchDataset
from aurora_rl.data.clip_sample import ClipSample, collate_clips
from aurora_rl.data.errors import DataError
from aurora_rl.data.load_failures import FailureLog, LoadFailure, TolerantDataset, TooManyFailures
from aurora_rl.data.refavs_dataset import RefAVSDataset
from aurora_rl.data.scene_facts import load_scene_facts

__all__ = [
    "AVSBenchDataset", "ClipSample", "DataError", "FailureLog", "LoadFailure", "RefAVSDataset",
    "TolerantDataset", "TooManyFailures", "build_dataset", "collate_clips", "load_scene_facts",
]


def build_dataset(cfg, split: str, **overrides):
    """The reader for ``cfg.layout`` (a DataConfig) on ``split``; overrides go to the reader."""
    if cfg.layout == "refavs":
        return RefAVSDataset.from_config(cfg, split, **overrides)
    return AVSBenchDataset.from_config(cfg, split, **overrides)
