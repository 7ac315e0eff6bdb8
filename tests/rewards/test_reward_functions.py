"""Reward functions against hand-computed values (AURORA definitions)."""

from __future__ import annotations

import numpy as np
import pytest

from aurora_rl.config.schema import RewardConfig
from aurora_rl.metrics.refavs_metrics import jaccard_per_frame
from aurora_rl.prompts.answer_format import compose_answer, parse_answer
from aurora_rl.records import RolloutRecord
from rewards.reward_functions import class_reward, format_reward, frame_ious, iou_reward, score_completion, score_record

# Two 2x2 frames: frame 0 has one foreground pixel, frame 1 is empty (a null-like frame).
GT = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=np.uint8)
# Frame 0: 1 shared pixel of 2 in the union -> 0.5. Frame 1: 3 of 4 pixels left empty -> 0.75.
PRED = np.array([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], dtype=bool)
MEAN_IOU = 0.625

GOOD = compose_answer("a red circle on the left", "a low pulsing sound", "the drum", "drum")
CASED = "Step 1: a red circle. Step 2: a low beat. Step 3: the drum. Step 4: The target is Drum. It is [SEG]."


def record(text: str, masks) -> RolloutRecord:
    return RolloutRecord(
        uid="v_drum_1", group_id="g", sample_index=0, group_size=3, policy_version=0,
        prompt_token_ids=np.arange(3), completion_token_ids=np.arange(2), sampling_logprobs=np.zeros(2),
        completion_text=text,
    ).with_masks(masks)


def test_frame_iou_hand_values_and_empty_gt_background_iou():
    assert frame_ious(PRED, GT).tolist() == [0.5, 0.75]
    assert frame_ious(np.zeros_like(PRED), GT).tolist() == [0.0, 1.0]  # empty prediction
    assert frame_ious(GT.astype(bool), GT).tolist() == [1.0, 1.0]
    full = np.ones_like(PRED)
    assert frame_ious(full, GT).tolist() == [0.25, 0.0]  # all-foreground on an empty frame scores 0


def test_frame_iou_threshold_is_strict_on_scores():
    scores = np.array([[[0.9, 0.5], [0.2, 0.0]], [[0.51, 0.0], [0.0, 0.0]]], dtype=np.float32)
    assert frame_ious(scores, GT, threshold=0.5).tolist() == [1.0, 0.75]  # 0.5 is background
    assert frame_ious(scores, GT, threshold=0.4).tolist() == [0.5, 0.75]
    assert frame_ious(PRED, GT, threshold=1.0).tolist() == [0.0, 1.0]  # nothing exceeds 1: all background


def test_frame_iou_matches_the_official_j_definition():
    rng = np.random.default_rng(0)
    pred = rng.random((6, 16, 16)) > 0.6
    gt = (rng.random((6, 16, 16)) > 0.7).astype(np.uint8)
    gt[2] = 0
    gt[4] = 0
    ours = frame_ious(pred, gt)
    official = jaccard_per_frame(pred.astype(np.float32), gt, threshold=0.5, apply_sigmoid=False)
    assert np.allclose(ours, official, atol=1e-6)


def test_iou_reward_mean_thresholded_and_no_seg():
    assert iou_reward(PRED, GT) == MEAN_IOU
    assert iou_reward(None, GT) == 0.5  # empty prediction: 0 on frame 0, 1 on the empty frame
    assert iou_reward(PRED, GT, variant="thresholded", iou_threshold=0.625) == 1.0  # >= counts
    assert iou_reward(PRED, GT, variant="thresholded", iou_threshold=0.63) == 0.0
    with pytest.raises(ValueError, match="iou_variant"):
        iou_reward(PRED, GT, variant="median")
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        iou_reward(PRED[:, :1], GT)


def test_format_reward():
    assert format_reward(parse_answer(GOOD)) == 1.0
    assert format_reward(parse_answer(CASED)) == 1.0
    assert format_reward(parse_answer(GOOD.replace("it is [SEG] .", ""))) == 0.0
    assert format_reward(parse_answer("it is [SEG] . the target is drum .")) == 0.0  # must end with it


def test_class_reward_presence_and_truth():
    assert class_reward(parse_answer(GOOD), "drum") == 2.0
    assert class_reward(parse_answer(CASED), "drum") == 2.0  # case and spacing normalised
    assert class_reward(parse_answer(GOOD), "guitar") == 1.0
    assert class_reward(parse_answer("it is [SEG] ."), "drum") == 0.0
    null_answer = compose_answer("two objects", "silence", "a cat", None)
    assert class_reward(parse_answer(null_answer), None) == 2.0  # null row: the answer is "nothing"
    assert class_reward(parse_answer(GOOD), None) == 1.0


def test_score_completion_totals_with_default_and_custom_weights():
    cfg = RewardConfig()
    assert score_completion(GOOD, PRED, GT, "drum", cfg) == {"format": 1.0, "iou": MEAN_IOU, "cls": 2.0,
                                                             "total": 3.625}
    weighted = RewardConfig(format=0.5, iou=2.0, cls=0.25)
    assert score_completion(GOOD, PRED, GT, "drum", weighted)["total"] == 0.5 + 1.25 + 0.5
    zero_cls = RewardConfig(cls=0.0)
    assert score_completion(GOOD, PRED, GT, "guitar", zero_cls)["total"] == 1.0 + MEAN_IOU
    thresholded = RewardConfig(iou_variant="thresholded", iou_threshold=0.7)
    assert score_completion(GOOD, PRED, GT, "drum", thresholded) == {"format": 1.0, "iou": 0.0, "cls": 2.0,
                                                                     "total": 3.0}


def test_no_seg_scores_an_empty_mask_even_if_masks_were_sent():
    text = "step 1 : x step 2 : y step 3 : z step 4 : the target is drum ."
    assert score_completion(text, PRED, GT, "drum", RewardConfig()) == {"format": 0.0, "iou": 0.5, "cls": 2.0,
                                                                        "total": 2.5}


def test_two_seg_tokens_use_the_masks_and_still_get_format_if_ending_right():
    text = "step 1 : a [SEG] here step 2 : b step 3 : c step 4 : the target is drum . it is [SEG] ."
    assert parse_answer(text).seg_count == 2
    assert score_completion(text, PRED, GT, "drum", RewardConfig()) == {"format": 1.0, "iou": MEAN_IOU, "cls": 2.0,
                                                                        "total": 3.625}
    misplaced = "it is [SEG] . the target is piano . [SEG]"
    assert score_completion(misplaced, PRED, GT, "drum", RewardConfig()) == {"format": 0.0, "iou": MEAN_IOU,
                                                                             "cls": 1.0, "total": 1.625}


def test_garbage_text_scores_only_the_empty_mask_iou():
    for text in ["", "%%%% \x00 ]]] [[[", "the target is . it is", "[SEG" * 5]:
        assert score_completion(text, PRED, GT, "drum", RewardConfig()) == {"format": 0.0, "iou": 0.5, "cls": 0.0,
                                                                            "total": 0.5}


def test_score_record_decodes_rle_masks():
    assert score_record(record(GOOD, PRED), GT, "drum", RewardConfig())["total"] == 3.625
    # [SEG] emitted but no masks came (None): scored as an empty prediction.
    assert score_record(record(GOOD, None), GT, "drum", RewardConfig())["iou"] == 0.5
    with pytest.raises(ValueError, match="ground truth"):
        score_record(record(GOOD, np.zeros((3, 2, 2), dtype=bool)), GT, "drum", RewardConfig())
