"""Off-policy correction against hand-computed values: the decoupled loss and its gradient,
truncated importance weights, the logged sums (ESS, truncated share, mismatch on lag-0 rows, the
actors' masks against the learner's), their micro-batch and rank totals, the staleness shares,
and the clipped loss unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aurora_rl.config import ConfigError, load_config
from aurora_rl.config.schema import ObjectiveConfig
from aurora_rl.grpo.objective import grpo_loss, step_batch
from aurora_rl.grpo.off_policy import (MASK_DRIFT_SUMS, OFF_POLICY_SUMS, importance_weights, mask_drift_sums,
                                       off_policy_sums)
from aurora_rl.grpo.policy_loss import POLICY_LOSSES, clipped_policy_loss, decoupled_policy_loss
from aurora_rl.grpo.step_metrics import off_policy_metrics, staleness_shares, step_metrics
from aurora_rl.records import RolloutRecord
from tests.config.test_config_loading import CONFIGS
from tests.grpo.test_objective import SEG, completions, outputs

LN2, LN3 = math.log(2.0), math.log(3.0)


def decoupled_case():
    """Rows of 2 and 1 tokens; weights exp(new - old): 1.5 and 3 on row 0, 0.5 on row 1."""
    new = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.0 - math.log(1.5), -2.0 - LN3], [-0.5 + LN2, 7.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True], [True, False]])
    return new, old, mask, torch.tensor([2.0, -1.0], dtype=torch.float64)


def test_decoupled_loss_weights_each_token_by_its_truncated_weight():
    new, old, mask, adv = decoupled_case()
    stats = decoupled_policy_loss(new, old, adv, mask, is_cap=2.0)
    # ratio to the proximal policy is 1: loss_t = -min(w, 2) * A; row 0: -(1.5 * 2), -(2 * 2); row 1: -(0.5 * -1)
    assert float(stats.loss.detach()) == pytest.approx(((-3.0 - 4.0) / 2 + 0.5) / 2)
    assert stats.clip_fraction == 0.0 and stats.ratio_mean == pytest.approx(1.0)
    stats.loss.backward()
    # d/d logp_new of -w * A * ratio over (tokens of the row, 2 rows); no gradient through w
    assert new.grad.flatten().tolist() == pytest.approx([-3.0 / 4, -4.0 / 4, 0.5 / 2, 0.0])


def test_decoupled_loss_untruncated_without_a_cap():
    new, old, mask, adv = decoupled_case()
    stats = decoupled_policy_loss(new, old, adv, mask, is_cap=None)
    assert float(stats.loss.detach()) == pytest.approx(((-3.0 - 6.0) / 2 + 0.5) / 2)
    stats.loss.backward()
    assert new.grad.flatten().tolist() == pytest.approx([-3.0 / 4, -6.0 / 4, 0.5 / 2, 0.0])


def test_decoupled_on_policy_is_the_clipped_loss_and_adds_the_same_kl():
    new, _, mask, adv = decoupled_case()
    ref = torch.tensor([[-1.5, -1.0], [0.0, 0.0]], dtype=torch.float64)
    on = decoupled_policy_loss(new, new.detach(), adv, mask, ref_logprobs=ref, kl_coef=0.5)
    grad_on, = torch.autograd.grad(on.loss, new)
    plain = clipped_policy_loss(new, new.detach(), adv, mask, ref_logprobs=ref, kl_coef=0.5)
    grad_plain, = torch.autograd.grad(plain.loss, new)
    k3 = ((math.exp(-0.5) + 0.5 - 1) + (math.exp(1.0) - 1.0 - 1)) / 2 / 2 + (math.exp(0.5) - 0.5 - 1) / 2
    assert on.kl == pytest.approx(k3) and plain.kl == pytest.approx(k3)
    assert float(on.loss.detach()) == pytest.approx(-(2.0 - 1.0) / 2 + 0.5 * k3)
    assert float(on.loss.detach()) == pytest.approx(float(plain.loss.detach())) and torch.allclose(grad_on, grad_plain)


def test_the_clipped_loss_gives_the_numbers_it_gave_before():
    """The clipped loss written out as it was (ratio to the sampling policy, its clip, k3 KL),
    on tokens clipped on both sides and not: the same loss, gradient and logged shares, exactly."""
    torch.manual_seed(1)
    new = (-torch.rand(4, 5)).requires_grad_()
    old = -torch.rand(4, 5)
    ref = -torch.rand(4, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -0.5, 2.0, -1.5])
    stats = clipped_policy_loss(new, old, adv, mask, 0.1, 0.3, ref, 0.2)
    grad, = torch.autograd.grad(stats.loss, new)

    ratio = torch.where(mask, new - old, torch.zeros(())).exp()
    a = adv[:, None]
    lo, hi = ratio * a, ratio.clamp(0.9, 1.3) * a
    per_token = -torch.minimum(lo, hi)
    d = torch.where(mask, ref - new, torch.zeros(()))
    rows = [0, 1, 3]  # with tokens
    m = mask.float()

    def seq_mean(v):
        return ((v * m).sum(1) / m.sum(1).clamp(min=1))[rows].mean()

    expected = seq_mean(per_token) + 0.2 * seq_mean(d.exp() - d - 1)
    assert torch.equal(stats.loss.detach(), expected.detach())
    assert torch.equal(grad, torch.autograd.grad(expected, new)[0])
    assert 0 < stats.clip_fraction < 1
    assert stats.clip_fraction == float(((hi < lo) & mask).sum() / mask.sum())
    assert stats.ratio_mean == float((ratio.detach() * mask).sum() / mask.sum())
    assert POLICY_LOSSES["clipped"](new, old, adv, mask, ObjectiveConfig(clip_low=0.1, clip_high=0.3, kl_coef=0.2),
                                    ref).loss.item() == stats.loss.item()


def test_importance_weights_are_truncated_at_the_cap():
    new = torch.tensor([[0.0, 0.0, 0.0]])
    old = torch.tensor([[-LN3, LN2, 5.0]])
    mask = torch.tensor([[True, True, False]])
    assert importance_weights(new, old, mask)[0].tolist() == pytest.approx([3.0, 0.5, 0.0])
    assert importance_weights(new, old, mask, cap=2.0)[0].tolist() == pytest.approx([2.0, 0.5, 0.0])
    assert importance_weights(new, old, mask, cap=0.25)[0].tolist() == pytest.approx([0.25, 0.25, 0.0])


def sums_case():
    """Three rows, lags 0, 1, 0; weights exp(new - old): [2, 1], [3], [1, 0.5] (row 1's second
    token is padding)."""
    new = torch.zeros(3, 2)
    old = torch.tensor([[-LN2, 0.0], [-LN3, -9.0], [0.0, LN2]])
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    return new, old, mask, torch.tensor([0, 1, 0])


def test_sums_hand_computed_with_the_mismatch_on_lag_0_rows_only():
    new, old, mask, lags = sums_case()
    sums = off_policy_sums(new, old, mask, lags, cap=2.5)
    assert set(sums) == set(OFF_POLICY_SUMS)
    assert sums["is_weight_sum"] == pytest.approx(2 + 1 + 3 + 1 + 0.5)
    assert sums["is_weight_sq_sum"] == pytest.approx(4 + 1 + 9 + 1 + 0.25)
    assert sums["is_truncated_tokens"] == 1  # the 3 of the lag-1 row
    assert off_policy_sums(new, old, mask, lags, cap=0.9)["is_truncated_tokens"] == 4
    assert off_policy_sums(new, old, mask, lags, cap=None)["is_truncated_tokens"] == 0
    # rows 0 and 2: d = new - old = ln2, 0, 0, -ln2; the lag-1 row's ln3 is left out
    assert sums["lag0_tokens"] == 4
    assert sums["lag0_abs_diff_sum"] == pytest.approx(2 * LN2)
    assert sums["lag0_k3_sum"] == pytest.approx((2 - LN2 - 1) + 0 + 0 + (0.5 + LN2 - 1))


def rank_stats(sums: dict, tokens: int) -> dict:
    return {**dict.fromkeys(MASK_DRIFT_SUMS, 0.0), **sums, "tokens": tokens}


def test_metrics_of_micro_batches_and_ranks_are_those_of_the_whole_batch():
    new, old, mask, lags = sums_case()
    whole = off_policy_sums(new, old, mask, lags, 2.5)
    parts = [off_policy_sums(new[r], old[r], mask[r], lags[r], 2.5) for r in ([0], [1, 2])]
    for key in OFF_POLICY_SUMS:
        assert parts[0][key] + parts[1][key] == pytest.approx(whole[key])
    metrics = off_policy_metrics([rank_stats(parts[0], 2), rank_stats(parts[1], 3)])
    assert metrics["is_ess"] == pytest.approx(7.5 ** 2 / (5 * 15.25))
    assert metrics["is_truncated"] == pytest.approx(1 / 5)
    assert metrics["logprob_mismatch"] == pytest.approx(2 * LN2 / 4)
    assert metrics["logprob_mismatch_k3"] == pytest.approx(0.5 / 4)
    assert metrics == pytest.approx(off_policy_metrics([rank_stats(whole, 5)]), nan_ok=True)


def test_equal_weights_have_an_ess_of_1_and_no_lag_0_row_no_mismatch():
    new, old, mask, _ = sums_case()
    equal = off_policy_sums(new, new - 0.3, mask, torch.tensor([2, 1, 1]), None)
    metrics = off_policy_metrics([rank_stats(equal, 5)])
    assert metrics["is_ess"] == pytest.approx(1.0) and metrics["is_truncated"] == 0.0
    assert math.isnan(metrics["logprob_mismatch"]) and math.isnan(metrics["logprob_mismatch_k3"])
    one = torch.tensor([[0.0, -30.0]])  # one token carries all the weight: 1/N
    metrics = off_policy_metrics([rank_stats(off_policy_sums(one, torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool),
                                                             torch.zeros(1), None), 2)])
    assert metrics["is_ess"] == pytest.approx(0.5, rel=1e-6)


def test_the_objective_returns_the_sums_and_micro_batches_add_up():
    """Through ``grpo_loss``: rows of lags 0, 2, 0 (one empty row), each micro-batch's sums
    add up to the whole batch's, and the decoupled loss's gradients do too."""
    torch.manual_seed(0)
    lengths, seg = [3, 2, 0, 1], [False, False, False, True]
    cfg = ObjectiveConfig(policy_loss="decoupled", is_cap=1.2)
    behaviour = [-torch.rand(n).numpy() for n in lengths]
    batch = step_batch(completions(lengths, seg), behaviour, [1.0, -0.5, 0.3, 0.8], torch.zeros(4, 1, 2, 2),
                       torch.zeros(4, 1, dtype=torch.bool), [0.0] * 4, SEG, cfg, lags=[0, 2, 1, 0])
    assert batch.lags.tolist() == [0, 2, 1, 0] and batch.select([1, 3]).lags.tolist() == [2, 0]
    logprobs = (-torch.rand(4, 3)).requires_grad_()

    def run(chunks):
        logprobs.grad = None
        totals = dict.fromkeys((*OFF_POLICY_SUMS, "tokens"), 0.0)
        for rows in chunks:
            loss, parts = grpo_loss(outputs(logprobs, lengths, seg, torch.zeros(4, 1, 2, 2), rows), batch.select(rows),
                                    cfg)
            loss.backward()
            for key in totals:
                totals[key] += parts[key]
        return totals, logprobs.grad.clone()

    whole, grad = run([[0, 1, 2, 3]])
    lp = logprobs.detach()
    w = [math.exp(float(lp[i, t]) - float(behaviour[i][t])) for i in (0, 1, 3) for t in range(lengths[i])]
    assert whole["tokens"] == 6
    assert whole["is_weight_sum"] == pytest.approx(sum(w), rel=1e-6)
    assert whole["is_truncated_tokens"] == sum(x > 1.2 for x in w)
    d0 = [float(lp[i, t]) - float(behaviour[i][t]) for i in (0, 3) for t in range(lengths[i])]
    assert whole["lag0_tokens"] == 4 and whole["lag0_abs_diff_sum"] == pytest.approx(sum(map(abs, d0)), rel=1e-6)
    # row 0's gradient: -min(w, 1.2) * A / (3 tokens * 3 rows with tokens)
    assert grad[0].tolist() == pytest.approx([-min(x, 1.2) * 1.0 / 9 for x in w[:3]], rel=1e-5)
    for chunks in ([[0, 1], [2, 3]], [[3], [1], [0, 2]]):
        totals, parts_grad = run(chunks)
        assert totals == pytest.approx(whole, rel=1e-9)
        assert torch.allclose(parts_grad, grad, atol=1e-7)


def test_without_lags_every_row_counts_as_lag_0():
    batch = step_batch(completions([2, 1], [False, False]), [np.zeros(2), np.zeros(1)], [1.0, -1.0],
                       torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, dtype=torch.bool), [0.0, 0.0], SEG, ObjectiveConfig())
    assert batch.lags.tolist() == [0, 0]


def record(group: str, index: int, version: int) -> RolloutRecord:
    return RolloutRecord(uid="u", group_id=group, sample_index=index, group_size=2, policy_version=version,
                         prompt_token_ids=np.array([1]), completion_token_ids=np.array([5, 6]),
                         sampling_logprobs=np.full(2, -1.0), completion_text="", rewards={"iou": 0.0}, reward=0.0)


def test_staleness_shares_count_groups_by_lag_with_the_same_keys_every_step():
    # learner at version 5 before the step (6 after): groups at lags 0, 2, 2, 1 (g3 at its older record's)
    records = [record("g0", 0, 5), record("g0", 1, 5), record("g1", 0, 3), record("g2", 0, 3), record("g3", 0, 4),
               record("g3", 1, 5)]
    shares = staleness_shares(records, version=6)
    assert shares == {"groups_lag_0": 0.25, "groups_lag_1": 0.25, "groups_lag_2": 0.5}
    assert staleness_shares(records[:2], 6, max_lag=2) == {"groups_lag_0": 1.0, "groups_lag_1": 0.0,
                                                           "groups_lag_2": 0.0}
    with pytest.raises(ValueError, match="g0/0 was sampled by policy version 5, after the learner's 4"):
        staleness_shares(records, version=5)


def test_step_metrics_called_as_before_logs_the_off_policy_metrics():
    records = [record("g0", 0, 2), record("g0", 1, 2), record("g1", 0, 3), record("g1", 1, 3)]
    new, old, mask, lags = sums_case()
    base = {"loss": 1.0, "policy_loss": 0.5, "kl": 0.0, "clip_fraction": 0.1, "ratio_mean": 1.0, "mask_bce": 0.0,
            "mask_dice": 0.0, "grad_norm": 1.0}
    ranks = [{**base, **rank_stats(off_policy_sums(new[r], old[r], mask[r], lags[r], 2.5), n)}
             for r, n in (([0], 2), ([1, 2], 3))]
    rollouts = [{"tokens": 8, "sample_s": 2.0, "seg_s": 0.5}]
    out = step_metrics(records, np.zeros((2, 2), dtype=np.float32), ranks, rollouts, 4, 4)
    assert out["policy_lag"] == 1.0 and out["groups_lag_0"] == 0.5 and out["groups_lag_1"] == 0.5
    assert out["is_ess"] == pytest.approx(7.5 ** 2 / (5 * 15.25)) and out["is_truncated"] == pytest.approx(0.2)
    assert out["logprob_mismatch"] == pytest.approx(LN2 / 2) and out["ratio_mean"] == 1.0
    assert step_metrics(records, np.zeros((2, 2), dtype=np.float32), ranks, rollouts, 4, 4, max_lag=3)[
        "groups_lag_3"] == 0.0


def test_the_actors_masks_against_the_learner_s_hand_computed_through_the_objective():
    """2 x 2 frames, 2 supervised per completion. Row 0: frame 0's truth {a}, the actor {a, b}
    (IoU 1/2), the learner {a} (1), the two 1/2; frame 1's truth empty, the actor empty (the
    backgrounds: 1), the learner {d} (3/4), the two: the learner's {d} alone, 0. Row 1 has
    no actor mask, row 2 no [SEG] in the learner's pass, row 3 no supervised frame: none counts."""
    on, off = 5.0, -5.0
    truth = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=torch.float32)
    gt = truth.expand(4, 2, 2, 2).clone()
    valid = torch.tensor([[True, True], [True, True], [True, True], [False, False]])
    actor = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
    learner = torch.tensor([[[on, off], [off, off]], [[off, off], [off, on]]]).expand(4, 2, 2, 2).clone()
    lengths, seg = [2, 2, 2, 2], [True, True, False, True]
    batch = step_batch(completions(lengths, seg), [np.zeros(2)] * 4, [0.0] * 4, gt, valid, [0.0] * 4, SEG,
                       ObjectiveConfig(), sampled_masks=[actor, None, actor, actor])
    assert batch.has_sampled_mask.tolist() == [True, False, True, True]
    _, parts = grpo_loss(outputs(torch.zeros(4, 2), lengths, seg, learner), batch, ObjectiveConfig())
    assert parts["drift_rows"] == 1.0
    assert parts["drift_iou_sampled_sum"] == pytest.approx((0.5 + 1.0) / 2)
    assert parts["drift_iou_learner_sum"] == pytest.approx((1.0 + 0.75) / 2)
    assert parts["drift_agreement_sum"] == pytest.approx((0.5 + 0.0) / 2)
    # identical masks agree fully, empty ones too; sums add over ranks into means
    same = mask_drift_sums(learner[:1], torch.tensor([True]), learner[:1] > 0, torch.tensor([True]), gt[:1],
                           valid[:1])
    assert same["drift_agreement_sum"] == 1.0 and same["drift_iou_sampled_sum"] == same["drift_iou_learner_sum"]
    metrics = off_policy_metrics([rank_stats(parts, 8), rank_stats({**dict.fromkeys(OFF_POLICY_SUMS, 0.0), **same}, 2)])
    assert metrics["mask_agreement"] == pytest.approx((0.25 + 1.0) / 2)
    assert metrics["mask_iou_learner"] - metrics["mask_iou_sampled"] == pytest.approx((0.875 - 0.75) / 2)
    assert math.isnan(off_policy_metrics([rank_stats(dict.fromkeys(OFF_POLICY_SUMS, 0.0), 0)])["mask_agreement"])
    with pytest.raises(ValueError, match=r"completion 0: the actor's masks \(3, 2, 2\) are not shaped"):
        step_batch(completions([2], [True]), [np.zeros(2)], [0.0], gt[:1], valid[:1], [0.0], SEG, ObjectiveConfig(),
                   sampled_masks=[np.zeros((3, 2, 2), dtype=bool)])


def test_the_weight_cap_is_checked_and_may_be_off():
    assert load_config(CONFIGS / "tiny" / "grpo.yaml", ["objective.is_cap=null"]).objective.is_cap is None
    cfg = load_config(CONFIGS / "tiny" / "grpo.yaml", ["objective.policy_loss=decoupled", "objective.is_cap=3"])
    assert (cfg.objective.policy_loss, cfg.objective.is_cap) == ("decoupled", 3.0)
    with pytest.raises(ConfigError, match=r"objective.is_cap: must be > 0.0, got 0"):
        load_config(CONFIGS / "tiny" / "grpo.yaml", ["objective.is_cap=0"])
