"""Advantages and the clipped policy loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from aurora_rl.grpo.advantages import group_advantages, group_spread_shares
from aurora_rl.grpo.policy_loss import clipped_policy_loss, sequence_mean


def test_group_advantages_hand_computed():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    adv = group_advantages(rewards, "grpo", eps=0.0 + 1e-12)
    std = math.sqrt(2 / 3)
    assert adv[0].tolist() == pytest.approx([-1 / std, 0.0, 1 / std])
    assert adv[1].tolist() == [0.0, 0.0, 0.0]  # equal rewards: no signal
    assert group_advantages(rewards, "centered")[0].tolist() == [-1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="unknown advantage estimator 'gae'"):
        group_advantages(rewards, "gae")


def test_group_advantages_eps_bounds_tiny_std():
    adv = group_advantages(torch.tensor([[1.0, 1.0 + 1e-6]]), eps=1e-4)
    assert abs(float(adv[0, 1])) < 0.01


def test_group_spread_shares_hand_computed():
    rewards = torch.tensor([[2.0, 2.0, 2.0], [2.93, 2.95, 2.94], [1.0, 3.0, 2.0], [0.5, 0.5, 0.55]])
    flat, small = group_spread_shares(rewards, small=0.1)
    assert flat == pytest.approx(0.25)  # the first group only
    assert small == pytest.approx(0.5)  # ranges 0.02 and 0.05
    # the small-spread group's std-normalised advantages are as large as the wide group's
    adv = group_advantages(rewards)
    # (0.01 / (0.01 * sqrt(2/3) + 1e-4) against 1 / sqrt(2/3))
    assert float(adv[1].abs().max()) == pytest.approx(1.2100, abs=1e-3)
    assert float(adv[2].abs().max()) == pytest.approx(1.2247, abs=1e-3)
    with pytest.raises(ValueError, match="at least one group"):
        group_spread_shares(torch.zeros(0, 3))


def test_group_advantages_shape_checked():
    with pytest.raises(ValueError, match="groups, G"):
        group_advantages(torch.ones(6))


def test_on_policy_loss_is_minus_mean_advantage_and_gradient_is_advantage_weighted():
    new = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    old = new.detach().clone()
    mask = torch.tensor([[True, True], [True, False]])
    adv = torch.tensor([2.0, -1.0])
    stats = clipped_policy_loss(new, old, adv, mask)
    assert float(stats.loss) == pytest.approx(-(2.0 + -1.0) / 2)  # ratio 1: -A per token, sequence means
    assert stats.clip_fraction == 0.0 and stats.ratio_mean == pytest.approx(1.0)
    stats.loss.backward()
    # d/d logp of -ratio*A / (n_tokens * n_rows): row 0 has 2 tokens, row 1 has 1
    assert torch.allclose(new.grad, torch.tensor([[-2.0 / 4, -2.0 / 4], [1.0 / 2, 0.0]]))


def test_clipping_takes_the_pessimistic_branch():
    old = torch.zeros(2, 1)
    new = torch.tensor([[math.log(1.5)], [math.log(0.5)]], requires_grad=True)
    mask = torch.ones(2, 1, dtype=torch.bool)
    stats = clipped_policy_loss(new, old, torch.tensor([1.0, -1.0]), mask, clip_low=0.2, clip_high=0.2)
    # row 0: A>0, ratio 1.5 -> min(1.5, 1.2) = 1.2 -> loss -1.2 ; row 1: A<0, ratio 0.5 -> min(-0.5, -0.8) = -0.8 -> 0.8
    assert float(stats.loss) == pytest.approx((-1.2 + 0.8) / 2)
    assert stats.clip_fraction == 1.0
    stats.loss.backward()
    assert new.grad.abs().sum() == 0  # both clipped: no gradient


def test_k3_kl_hand_computed_and_zero_at_reference():
    new = torch.tensor([[-1.0, -1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    same = clipped_policy_loss(new, new, torch.zeros(1), mask, ref_logprobs=new, kl_coef=0.5)
    assert same.kl == pytest.approx(0.0)
    ref = torch.tensor([[-1.5, -0.5]])
    stats = clipped_policy_loss(new, new, torch.zeros(1), mask, ref_logprobs=ref, kl_coef=0.5)
    expected = ((math.exp(-0.5) + 0.5 - 1) + (math.exp(0.5) - 0.5 - 1)) / 2
    assert stats.kl == pytest.approx(expected)
    assert float(stats.loss) == pytest.approx(0.5 * expected)


def test_sequence_mean_ignores_padding_and_empty_rows():
    v = torch.tensor([[1.0, 3.0, 100.0], [5.0, 100.0, 100.0], [7.0, 7.0, 7.0]])
    m = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    assert float(sequence_mean(v, m)) == pytest.approx((2.0 + 5.0) / 2)


def test_completion_shares_count_cut_and_reflective_answers():
    from aurora_rl.grpo.step_metrics import completion_shares

    plain = "step 1 : a . step 2 : b . step 3 : c . step 4 : the target is dog . it is [SEG] ."
    first = "step 1 : a . step 2 : b . step 3 : c . step 4 : the target is cat . wait , let me reconsider ."
    reflective, cut = f"{first} {plain}", f"{first} step 1 : a"
    shares = completion_shares([plain, reflective, cut, plain], [20, 40, 50, 30], max_new_tokens=50)
    assert shares == {"completion_tokens": 35.0, "truncated": 0.25, "reflective": 0.5}
    assert completion_shares([], [], 50)["truncated"] == 0.0
    with pytest.raises(ValueError, match="2 completion texts but 1 lengths"):
        completion_shares([plain, plain], [3], 50)
