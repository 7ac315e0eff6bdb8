"""GroundTruth: masks, class and null flag of a metadata row from the mask PNGs and scene facts only."""

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
        t = truth(row.line)
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
    t = truth(seen.line)
    assert t.target_class == layout.uid_class(seen.uid) and not t.is_null
    assert t.masks.shape == (5, 16, 16)
    null = next(r for r in rows if r.split == "test_n")
    assert truth(null.line) == (truth(null.line).masks, None, True)


def test_cache_and_read_only_masks(synthetic_root):
    truth = GroundTruth(synthetic_root, "val", 16, cache_size=2)
    line = next(iter(truth.rows))
    first = truth(line)
    assert truth(line) is first
    assert truth.cache_info().hits == 1
    with pytest.raises(ValueError):
        first.masks[0, 0, 0] = 1  # shared through the cache: nobody may change it


def test_errors_name_the_file(synthetic_root, tmp_path):
    root = masks_only_copy(synthetic_root, tmp_path / "gt", with_facts=True)
    truth = GroundTruth(root, "train", 16)
    with pytest.raises(DataError, match="metadata.csv.*row 99999 is not in this ground truth"):
        truth(99999)
    val_line = next(r.line for r in layout.read_metadata(root) if r.split == "val")
    assert val_line not in truth
    row = next(iter(truth.rows.values()))
    missing = layout.mask_path(root, row.vid, row.fid, 3)
    missing.unlink()
    with pytest.raises(DataError, match=str(missing)):
        truth(row.line)


def test_a_uid_on_two_rows_is_scored_against_each_rows_own_mask(tmp_path):
    """The official metadata repeats a uid with another fid: each row is its own sample, and a
    rollout of one row is rewarded against that row's mask, not the other's."""
    from aurora_rl.config.schema import RewardConfig
    from aurora_rl.prompts.answer_format import compose_answer
    from aurora_rl.records import RolloutRecord
    from rewards.reward_functions import score_record
    from rewards.stream_scorer import metadata_row
    from tests.data.layout_fixtures import REPEATED, SIZE, expected_mask, write_official_quirks_fixture

    root = write_official_quirks_fixture(tmp_path / "official")
    truth = GroundTruth(root, None, SIZE)
    first, second = [r for r in truth.rows.values() if r.uid == REPEATED[1]]
    assert (first.fid, second.fid) == (0, 1) and first.line != second.line
    assert np.array_equal(truth(first.line).masks[3], expected_mask(0, 3))
    assert np.array_equal(truth(second.line).masks[3], expected_mask(1, 3))
    assert truth(first.line).target_class == truth(second.line).target_class == "helicopter"

    answer = compose_answer("a .", "b .", "c .", "helicopter")
    for row, other in ((first, second), (second, first)):
        record = RolloutRecord(uid=row.uid, group_id="g", sample_index=0, group_size=1, policy_version=0,
                               prompt_token_ids=np.arange(3), completion_token_ids=np.arange(3),
                               sampling_logprobs=np.zeros(3), completion_text=answer, meta={"row": row.line},
                               ).with_masks(truth(row.line).masks.astype(bool))
        own = score_record(record, truth(metadata_row(record)).masks, "helicopter", RewardConfig())
        against_other = score_record(record, truth(other.line).masks, "helicopter", RewardConfig())
        assert own["iou"] == 1.0 and against_other["iou"] < 0.5
    with pytest.raises(ValueError, match="names no metadata row"):
        metadata_row(RolloutRecord(**{**record.__dict__, "meta": {}}))
