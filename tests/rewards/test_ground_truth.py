"""GroundTruth: masks, class and null flag of a uid from the mask PNGs and scene facts only."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from aurora_rl.data import refavs_layout as layout
from aurora_rl.data.errors import DataError
from aurora_rl.data.refavs_dataset import RefAVSDataset
from aurora_rl.data.scene_facts import load_scene_facts
from rewards.ground_truth import GroundTruth


def masks_only_copy(src, dst, with_facts: bool):
    """metadata.csv + gt_mask/ (+ scene facts): no frames, no audio."""
    dst.mkdir()
    shutil.copy(layout.metadata_path(src), layout.metadata_path(dst))
    shutil.copytree(src / "gt_mask", dst / "gt_mask")
    if with_facts:
        shutil.copy(src / "scene_facts.jsonl", dst / "scene_facts.jsonl")
    return dst


def test_synthetic_truth_matches_the_dataset_without_reading_media(synthetic_root, tmp_path):
    root = masks_only_copy(synthetic_root, tmp_path / "gt", with_facts=True)
    facts = load_scene_facts(synthetic_root)
    dataset = RefAVSDataset(synthetic_root, "train", mask_size=32)
    truth = GroundTruth(root, "train", 32)
    nulls = 0
    for row in dataset.rows[:4] + [r for r in dataset.rows if facts[r.uid]["expression_kind"] == "null"]:
        t = truth(row.uid)
        assert t.masks.dtype == np.uint8 and t.masks.shape == (10, 32, 32)
        assert np.array_equal(t.masks, dataset.load(row).masks)
        assert t.is_null == (facts[row.uid]["expression_kind"] == "null")
        assert t.target_class == facts[row.uid]["target_class"]
        if t.is_null:
            nulls += 1
            assert t.target_class is None and not t.masks.any()
        else:
            assert t.masks.any()
    assert nulls >= 1  # the synthetic train split has a null row with seed 0


def test_real_layout_takes_the_class_from_the_uid(synthetic_root, tmp_path):
    root = masks_only_copy(synthetic_root, tmp_path / "gt", with_facts=False)
    rows = layout.read_metadata(root)
    truth = GroundTruth(root, None, 16, num_frames=5)
    seen = next(r for r in rows if r.split == "test_s")
    t = truth(seen.uid)
    assert t.target_class == layout.uid_class(seen.uid) and not t.is_null
    assert t.masks.shape == (5, 16, 16)
    null = next(r for r in rows if r.split == "test_n")
    assert truth(null.uid) == (truth(null.uid).masks, None, True)


def test_cache_and_read_only_masks(synthetic_root):
    truth = GroundTruth(synthetic_root, "val", 16, cache_size=2)
    uid = next(iter(truth.rows))
    first = truth(uid)
    assert truth(uid) is first
    assert truth.cache_info().hits == 1
    with pytest.raises(ValueError):
        first.masks[0, 0, 0] = 1  # shared through the cache: nobody may change it


def test_errors_name_the_file(synthetic_root, tmp_path):
    root = masks_only_copy(synthetic_root, tmp_path / "gt", with_facts=True)
    truth = GroundTruth(root, "train", 16)
    with pytest.raises(DataError, match="metadata.csv.*not in this ground truth"):
        truth("no_such_uid_1")
    val_uid = next(r.uid for r in layout.read_metadata(root) if r.split == "val")
    assert val_uid not in truth
    row = next(iter(truth.rows.values()))
    missing = layout.mask_path(root, row.vid, row.fid, 3)
    missing.unlink()
    with pytest.raises(DataError, match=str(missing)):
        truth(row.uid)
