"""The GRPO objective against hand-computed values: policy, KL and mask terms, token masking,
the mask gate, the mix's CE, and micro-batches that add up to the whole batch's gradient."""

from __future__ import annotations

import math
import typing

import numpy as np
import pytest
import torch

from aurora_rl.config.schema import ObjectiveConfig
from aurora_rl.grpo.advantages import ADVANTAGE_ESTIMATORS
from aurora_rl.grpo.objective import grpo_loss, step_batch
from aurora_rl.grpo.policy_loss import POLICY_LOSSES
from aurora_rl.model.policy import PolicyOutput

SEG = 9


def outputs(logprobs: torch.Tensor, lengths: list[int], has_seg: list[bool], mask_logits: torch.Tensor,
            rows: list[int] | None = None) -> PolicyOutput:
    """What the policy returns for ``rows`` (default all): answer log-probabilities as wide as
    the rows' longest answer, its token mask, [SEG] flags and mask logits."""
    rows = list(range(len(lengths))) if rows is None else rows
    width = max(lengths[i] for i in rows)
    mask = torch.tensor([[t < lengths[i] for t in range(width)] for i in rows])
    b = len(rows)
    return PolicyOutput(answer_logprobs=logprobs[rows, :width] * mask, answer_mask=mask,
                        has_seg=torch.tensor([has_seg[i] for i in rows]), seg_hidden=torch.zeros(b, 4),
                        seg_embedding=torch.zeros(b, 4), mask_logits=mask_logits[rows],
                        first_token_logits=torch.zeros(b, 3))


def completions(lengths: list[int], seg: list[bool]) -> list[np.ndarray]:
    return [np.array([5] * (n - 1) + [SEG if s else 6])[:n] for n, s in zip(lengths, seg)]


def test_policy_kl_and_mask_terms_hand_computed():
    cfg = ObjectiveConfig(kl_coef=0.5)
    new = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, 0.0, 0.0]], requires_grad=True)
    gt = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])  # [B, k=1, 2, 2]
    batch = step_batch(completions([3, 1], [True, False]), [np.full(3, -1.0), np.array([-2.0])], [1.0, -2.0],
                       gt, torch.ones(2, 1, dtype=torch.bool), [0.8, 0.0], SEG, cfg)
    out = outputs(new, [3, 1], [True, False], torch.zeros(2, 1, 2, 2, requires_grad=True))
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, 0.0, 0.0]])
    loss, parts = grpo_loss(out, batch, cfg, ref_logprobs=ref)

    # ratio 1 everywhere: row 0 gives -A = -1 per token, row 1 gives +2; a mean over the two rows
    policy = (-1.0 + 2.0) / 2
    # k3 on row 0's tokens (ref - new = -0.5, 0, 0.5), row 1's one token at its reference
    kl = ((math.exp(-0.5) + 0.5 - 1) + 0.0 + (math.exp(0.5) - 0.5 - 1)) / 3 / 2
    # row 0's mask (row 1 has no [SEG]): logits 0 -> p = 0.5 on 4 pixels, one of them foreground
    bce, dice = math.log(2), 1 - (2 * 0.5 + 1) / (4 * 0.5 + 1 + 1)
    assert parts["policy_loss"] == pytest.approx(policy)
    assert parts["kl"] == pytest.approx(kl, rel=1e-5)
    assert parts["mask_bce"] == pytest.approx(bce, rel=1e-5) and parts["mask_dice"] == pytest.approx(dice)
    assert float(loss.detach()) == pytest.approx(policy + 0.5 * kl + 2.0 * bce + 0.5 * dice, rel=1e-5)
    assert parts["loss"] == pytest.approx(float(loss.detach())) and parts["tokens"] == 4
    loss.backward()
    # padded tokens get no gradient: d/dlogp of -ratio * A over (3 tokens, 2 rows), + the KL's share
    assert new.grad[1, 1:].abs().sum() == 0
    assert float(new.grad[1, 0]) == pytest.approx(2.0 / 2)
    k3_grad = [0.5 * (1 - math.exp(d)) / 3 / 2 for d in (-0.5, 0.0, 0.5)]  # d k3 / d new = 1 - e^(ref - new)
    assert new.grad[0].tolist() == pytest.approx([-1.0 / 3 / 2 + g for g in k3_grad], rel=1e-5)


def test_the_mask_gate_keeps_the_mask_loss_off_rollouts_below_it():
    cfg = ObjectiveConfig(mask_min_iou=0.5)
    args = (completions([2, 2], [True, True]), [np.zeros(2), np.zeros(2)], [1.0, -1.0], torch.ones(2, 1, 2, 2),
            torch.ones(2, 1, dtype=torch.bool))
    gated = step_batch(*args, [0.3, 0.7], SEG, cfg)
    assert gated.learn_mask.tolist() == [False, True] and gated.w_mask.tolist() == [0.0, 1.0]
    out = outputs(torch.zeros(2, 2, requires_grad=True), [2, 2], [True, True], torch.zeros(2, 1, 2, 2))
    _, parts = grpo_loss(out, gated, cfg)
    _, both = grpo_loss(out, step_batch(*args, [0.3, 0.7], SEG, ObjectiveConfig()), ObjectiveConfig())
    assert parts["mask_bce"] == pytest.approx(both["mask_bce"])  # the same per-frame mean, on row 1 alone
    _, none = grpo_loss(out, step_batch(*args, [0.1, 0.2], SEG, cfg), cfg)
    assert none["mask_bce"] == 0.0 and none["mask_dice"] == 0.0


def test_step_weights_share_completions_tokens_and_supervised_frames():
    valid = torch.tensor([[True, True], [True, False], [True, True]])
    batch = step_batch(completions([3, 0, 2], [True, False, True]), [np.zeros(3), np.zeros(0), np.zeros(2)],
                       [0.5, 0.0, -0.5], torch.zeros(3, 2, 2, 2), valid, [1.0, 0.0, 1.0], SEG, ObjectiveConfig())
    assert batch.w_policy.tolist() == [0.5, 0.0, 0.5]  # an empty completion has no policy term
    assert batch.w_tokens.tolist() == pytest.approx([0.6, 0.0, 0.4])
    assert batch.w_mask.tolist() == [0.5, 0.0, 0.5]  # 2 supervised frames each; row 1 has no [SEG]
    assert batch.old_logprobs.shape == (3, 3)


def test_mix_rows_add_their_weighted_ce():
    cfg = ObjectiveConfig(mix_ce=0.5)
    batch = step_batch(completions([2], [False]), [np.zeros(2)], [0.0], torch.zeros(1, 1, 2, 2),
                       torch.ones(1, 1, dtype=torch.bool), [0.0], SEG, cfg)
    out = outputs(torch.zeros(1, 2, requires_grad=True), [2], [False], torch.zeros(1, 1, 2, 2))
    mix = outputs(torch.tensor([[-1.0, -2.0, 0.0], [-3.0, 0.0, 0.0]]), [2, 1], [False, False], torch.zeros(2, 1, 2, 2))
    plain, _ = grpo_loss(out, batch, cfg)
    loss, parts = grpo_loss(out, batch, cfg, mix_out=mix)
    assert parts["mix_ce"] == pytest.approx((1.0 + 2.0 + 3.0) / 3)  # the mean over the rows' tokens
    assert float(loss.detach()) == pytest.approx(float(plain.detach()) + 0.5 * 2.0)


def test_micro_batches_add_up_to_the_whole_batch_gradient():
    """Rows of different lengths (one empty), with and without [SEG], the mask gate on: the
    gradients of the micro-batches' losses add up to the gradient of the whole batch's."""
    torch.manual_seed(0)
    lengths, seg = [4, 2, 0, 3, 1], [True, False, False, True, True]
    cfg = ObjectiveConfig(mask_min_iou=0.5, kl_coef=0.1)
    batch = step_batch(completions(lengths, seg), [-torch.rand(n).numpy() for n in lengths],
                       [1.0, -0.5, 0.3, 0.25, -1.0], (torch.rand(5, 2, 4, 4) > 0.5).float(),
                       torch.tensor([[True, True], [True, True], [False, True], [True, False], [True, True]]),
                       [0.9, 0.0, 0.0, 0.6, 0.2], SEG, cfg)
    logprobs = (-torch.rand(5, 4)).requires_grad_()
    masks = torch.randn(5, 2, 4, 4, requires_grad=True)
    ref = -torch.rand(5, 4)

    def gradient(chunks: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, float]:
        logprobs.grad = masks.grad = None
        total = 0.0
        for rows in chunks:
            out = outputs(logprobs, lengths, seg, masks, rows)
            loss, parts = grpo_loss(out, batch.select(rows), cfg, ref[rows, :out.answer_logprobs.shape[1]])
            loss.backward()
            total += parts["loss"]
        return logprobs.grad.clone(), masks.grad.clone(), total

    whole = gradient([[0, 1, 2, 3, 4]])
    for chunks in ([[0, 1], [2, 3], [4]], [[4, 0], [3], [1, 2]]):
        parts = gradient(chunks)
        assert torch.allclose(parts[0], whole[0], atol=1e-6)
        assert torch.allclose(parts[1], whole[1], atol=1e-6)
        assert parts[2] == pytest.approx(whole[2], rel=1e-5)
    assert whole[1].abs().sum() > 0 and whole[1][[1, 2, 4]].abs().sum() == 0  # gated or no [SEG]


def test_the_registries_hold_exactly_the_names_the_config_accepts():
    hints = typing.get_type_hints(ObjectiveConfig)
    assert set(typing.get_args(hints["advantage"])) == set(ADVANTAGE_ESTIMATORS)
    assert set(typing.get_args(hints["policy_loss"])) == set(POLICY_LOSSES)
