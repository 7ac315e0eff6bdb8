"""J, F and S against hand-computed cases, and F against a literal re-statement of the official loop."""

import math

import numpy as np
import pytest
import torch

from aurora_rl.config.schema import MetricsConfig
from aurora_rl.metrics import (
    AURORA,
    OFFICIAL,
    MetricConvention,
    RefAVSEvaluator,
    SplitMetrics,
    f_score,
    f_thresholds,
    jaccard,
    jaccard_per_frame,
    mix_score,
    s_score,
)


def logit(p):
    return math.log(p / (1 - p))


def frames(*rows):
    """Frames from flat 2x2 lists: frames([a, b, c, d], ...) -> [N, 2, 2]."""
    return np.array(rows, dtype=np.float32).reshape(len(rows), 2, 2)


# --- J -------------------------------------------------------------------------------------


def test_j_hand_computed_iou():
    gt = frames([1, 1, 0, 0])
    pred = frames([0.9, 0.3, 0.5, 0.1])  # > 0.4: pixels 0 and 2; inter 1, union 3
    assert jaccard_per_frame(pred, gt, apply_sigmoid=False)[0] == pytest.approx(1 / 3)


def test_j_empty_ground_truth_scores_both_empty_pixels_over_all():
    gt = frames([0, 0, 0, 0], [0, 0, 0, 0])
    pred = frames([0.9, 0.1, 0.1, 0.1], [0, 0, 0, 0])
    assert jaccard_per_frame(pred, gt, apply_sigmoid=False) == pytest.approx([0.75, 1.0])


def test_j_all_empty_prediction():
    gt = frames([1, 0, 0, 0], [0, 0, 0, 0])
    pred = np.full((2, 2, 2), -20.0)  # logits: nothing predicted
    assert jaccard_per_frame(pred, gt) == pytest.approx([0.0, 1.0])
    assert jaccard(pred, gt) == pytest.approx(0.5)


def test_j_threshold_is_strict_and_sigmoid_is_explicit():
    gt = frames([1, 0, 0, 0])
    at = frames([0.4, 0, 0, 0])
    assert jaccard_per_frame(at, gt, threshold=0.4, apply_sigmoid=False)[0] == 0.0
    above = frames([0.41, 0, 0, 0])
    assert jaccard_per_frame(above, gt, threshold=0.4, apply_sigmoid=False)[0] == pytest.approx(1.0)
    # logits -0.2 and 0.2: sigmoid 0.45 and 0.55; official (> 0.4) takes both, AURORA (> 0.5) one
    gt2 = frames([1, 1, 0, 0])
    pred = frames([0.2, -0.2, -9, -9])
    assert jaccard_per_frame(pred, gt2, threshold=0.4)[0] == pytest.approx(1.0)
    assert jaccard_per_frame(pred, gt2, threshold=0.5)[0] == pytest.approx(0.5)
    # logit 0 -> exactly 0.5: not foreground at 0.5
    assert jaccard_per_frame(frames([0, -9, -9, -9]), frames([1, 0, 0, 0]), threshold=0.5)[0] == 0.0


def test_j_accepts_torch_tensors():
    gt = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    pred = torch.tensor([[[logit(0.9), logit(0.3)], [logit(0.5), logit(0.1)]]], requires_grad=True)
    assert jaccard_per_frame(pred, gt)[0] == pytest.approx(1 / 3)


def test_j_shape_errors():
    with pytest.raises(ValueError, match="differs"):
        jaccard_per_frame(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        jaccard_per_frame(np.zeros((2, 2)), np.zeros((2, 2)))


# --- F -------------------------------------------------------------------------------------

GT2 = frames([1, 0, 0, 0], [1, 1, 0, 0])
PRED2 = frames([0.8, 0.6, 0.2, 0.0], [0.7, 0.3, 0.5, 0.1])


def test_f_thresholds_are_the_official_float32_linspace():
    th = f_thresholds()
    assert th.shape == (255,) and th.dtype == np.float32
    assert th[0] == 0.0 and th[-1] == 1.0  # 1 - 1e-10 rounds to 1.0 in float32
    assert np.allclose(th, torch.linspace(0, 1 - 1e-10, 255).numpy(), atol=0)


def test_f_hand_computed_two_frames():
    # For thresholds in (0.6, 0.7]: frame 1 predicts {0.8} -> P = R = 1 -> F = 1; frame 2 predicts
    # {0.7} -> P = 1, R = 1/2 -> F = 1.3 * 0.5 / (0.3 + 0.5) = 0.8125. Mean 0.90625 is the maximum.
    assert f_score(PRED2, GT2, apply_sigmoid=False) == pytest.approx(0.90625)


def test_f_skips_empty_ground_truth_frames():
    pred = np.concatenate([PRED2, frames([0.9, 0.9, 0.9, 0.9])])
    gt = np.concatenate([GT2, frames([0, 0, 0, 0])])
    assert f_score(pred, gt, apply_sigmoid=False) == pytest.approx(0.90625)


def test_f_all_empty_ground_truth_is_zero():
    assert f_score(PRED2, np.zeros_like(GT2), apply_sigmoid=False) == 0.0


def test_f_all_empty_prediction_scores_at_threshold_zero():
    # prob 0 >= threshold 0: at the first threshold every pixel counts as predicted (official quirk)
    expected = (1.3 * 0.25 / (0.3 * 0.25 + 1) + 1.3 * 0.5 / (0.3 * 0.5 + 1)) / 2
    assert f_score(np.zeros_like(PRED2), GT2, apply_sigmoid=False) == pytest.approx(expected)
    assert f_score(np.full_like(PRED2, -50.0), GT2) == pytest.approx(expected)


def test_f_threshold_edge_counts_equal_scores_as_foreground():
    gt = frames([1, 0, 0, 0])
    # probability 1.0 is >= the last threshold (1.0): a perfect prediction scores 1
    assert f_score(frames([1.0, 0.0, 0.0, 0.0]), gt, apply_sigmoid=False) == pytest.approx(1.0)
    # a score exactly on the smallest non-zero threshold is predicted there (>=): P = 1/2, R = 1.
    # With a strict > only threshold 0 would predict anything and F would be 1.3 * 0.25 / 1.075.
    t = f_thresholds()[1]
    assert f_score(frames([t, t, 0, 0]), gt, apply_sigmoid=False) == pytest.approx(1.3 * 0.5 / (0.15 + 1))


def official_f(pred, gt, pr_num=255):
    """The official Eval_Fmeasure loop, restated with torch (float32), for a cross-check."""
    pred = torch.sigmoid(torch.as_tensor(pred))
    gt = torch.as_tensor(gt)
    avg_f, img_num, score = 0.0, 0, torch.zeros(pr_num)
    for i in range(pred.shape[0]):
        if torch.mean(gt[i]) == 0.0:
            continue
        thlist = torch.linspace(0, 1 - 1e-10, pr_num)
        prec, recall = torch.zeros(pr_num), torch.zeros(pr_num)
        for j in range(pr_num):
            y = (pred[i] >= thlist[j]).float()
            tp = (y * gt[i]).sum()
            prec[j], recall[j] = tp / (y.sum() + 1e-20), tp / (gt[i].sum() + 1e-20)
        f = (1 + 0.3) * prec * recall / (0.3 * prec + recall)
        f[f != f] = 0
        avg_f += f
        img_num += 1
        score = avg_f / img_num
    return score.max().item()


def test_f_matches_the_official_loop_on_random_logits():
    rng = np.random.default_rng(0)
    pred = rng.normal(0, 3, size=(4, 12, 12)).astype(np.float32)
    gt = (rng.random((4, 12, 12)) < 0.3).astype(np.float32)
    gt[2] = 0
    assert f_score(pred, gt) == pytest.approx(official_f(pred, gt), abs=1e-5)


# --- S -------------------------------------------------------------------------------------


def test_s_hand_computed():
    pred = frames([0.9, 0.6, 0.5, 0.1], [0.2, 0.1, 0.0, 0.3])  # > 0.5: 2 of 8 pixels
    assert s_score(pred, apply_sigmoid=False) == pytest.approx(0.5)


def test_s_edges():
    assert s_score(np.full((3, 4, 4), -30.0)) == 0.0
    assert s_score(np.full((3, 4, 4), 30.0)) == pytest.approx(1.0)
    assert s_score(np.zeros((1, 2, 2))) == 0.0  # logit 0 -> 0.5, not > 0.5
    assert s_score(frames([0.5, 0.5, 0.5, 0.51]), apply_sigmoid=False) == pytest.approx(0.5)


# --- aggregation ---------------------------------------------------------------------------

CLIP_A = (frames([0.9, 0.3, 0.5, 0.1]), frames([1, 1, 0, 0]))  # J = 1/3
CLIP_B = (frames([0.9, 0.9, 0.9, 0.9], [0, 0, 0, 0]), frames([1, 1, 1, 1], [1, 0, 0, 0]))  # J = 1, 0


def test_split_metrics_one_clip_per_group():
    m = SplitMetrics("test_s", MetricConvention("probs", j_apply_sigmoid=False, f_apply_sigmoid=False, clips_per_group=1))
    m.add(*CLIP_A)
    m.add(*CLIP_B)
    r = m.result()
    assert r["clips"] == 2 and set(r) == {"J", "F", "clips"}
    assert r["J"] == pytest.approx((1 / 3 + 0.5) / 2)


def test_split_metrics_groups_pool_frames_like_the_official_batches():
    m = SplitMetrics("test_s", MetricConvention("probs", j_apply_sigmoid=False, f_apply_sigmoid=False, clips_per_group=2))
    m.add(*CLIP_A)
    m.add(*CLIP_B)
    m.add(*CLIP_A)  # a last, partial group
    assert m.result()["J"] == pytest.approx(((1 / 3 + 1 + 0) / 3 + 1 / 3) / 2)


def test_null_split_reports_s_only():
    m = SplitMetrics("test_n", MetricConvention("probs", s_apply_sigmoid=False))
    m.add(frames([0.9, 0.6, 0.5, 0.1], [0.2, 0.1, 0.0, 0.3]), np.zeros((2, 2, 2)))
    m.add(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    assert m.result() == {"S": pytest.approx(0.25), "clips": 2}


def test_mix_and_evaluator_summary():
    assert mix_score({"test_s": {"J": 0.6, "F": 0.7}, "test_u": {"J": 0.4, "F": 0.5}}) == pytest.approx({"J": 0.5, "F": 0.6})
    assert math.isnan(mix_score({"test_s": {"J": 0.6, "F": 0.7}})["J"])
    ev = RefAVSEvaluator(MetricConvention("probs", j_apply_sigmoid=False, f_apply_sigmoid=False, s_apply_sigmoid=False))
    ev.add("test_s", *CLIP_A)
    ev.add("test_u", *CLIP_B)
    ev.add("test_n", np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    s = ev.summary()
    assert s["test_s"]["J"] == pytest.approx(1 / 3) and s["test_u"]["J"] == pytest.approx(0.5)
    assert s["mix"]["J"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert s["test_n"] == {"S": 0.0, "clips": 1}


def test_conventions():
    assert (OFFICIAL.j_threshold, OFFICIAL.f_apply_sigmoid, OFFICIAL.clips_per_group) == (0.4, True, 4)
    assert (AURORA.j_threshold, AURORA.f_apply_sigmoid, AURORA.clips_per_group) == (0.5, False, 1)
    assert MetricConvention.from_config(MetricsConfig(convention="official")) is OFFICIAL
    assert MetricConvention.from_config(MetricsConfig(convention="aurora")) is AURORA
