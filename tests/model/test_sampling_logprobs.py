"""Log-probabilities under the sampler's distribution (temperature, top-p nucleus), by hand.

One row of logits log([0.5, 0.25, 0.15, 0.1]) gives softmax exactly those probabilities, so every
nucleus and renormalised probability below can be worked out on paper (the comments do).
"""

from __future__ import annotations

import math

import pytest
import torch

from aurora_rl.config.schema import SamplingConfig
from aurora_rl.model.sampling_logprobs import OUTSIDE_NUCLEUS_LOGPROB, sampling_logprobs
from tests.model.tiny_policy import make_inputs, make_policy

PROBS = [0.5, 0.25, 0.15, 0.1]


def logprobs_of(probs: list[float], targets: list[int], temperature: float, top_p: float,
                grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Each target's log-probability with the row log(probs) repeated per target (float64), and the logits."""
    logits = torch.tensor(probs, dtype=torch.float64).log().repeat(len(targets), 1).requires_grad_(grad)
    return sampling_logprobs(logits, torch.tensor(targets), temperature, top_p), logits


def test_top_p_renormalises_over_the_nucleus_and_floors_the_tokens_outside():
    # ascending 0.1, 0.15, 0.25, 0.5 sum to 0.1, 0.25, 0.5, 1.0: with top_p 0.7 the first two
    # reach at most 1 - 0.7 = 0.3 and go; 0.5 and 0.25 stay, renormalised to 2/3 and 1/3
    got, _ = logprobs_of(PROBS, [0, 1, 2, 3], temperature=1.0, top_p=0.7)
    assert got.tolist() == pytest.approx([math.log(2 / 3), math.log(1 / 3), -30.0, -30.0], abs=1e-12)
    assert OUTSIDE_NUCLEUS_LOGPROB == -30.0
    # top_p 0.8: 0.25 <= 0.2 no longer holds for the second, so 0.15 joins (mass 0.9)
    got, _ = logprobs_of(PROBS, [0, 2, 3], temperature=1.0, top_p=0.8)
    assert got.tolist() == pytest.approx([math.log(0.5 / 0.9), math.log(0.15 / 0.9), -30.0], abs=1e-12)


def test_temperature_scales_before_the_nucleus_is_chosen():
    # temperature 0.5 squares the probabilities: 0.25, 0.0625, 0.0225, 0.01 (sum 0.345)
    got, _ = logprobs_of(PROBS, [0, 1, 2, 3], temperature=0.5, top_p=1.0)
    assert got.tolist() == pytest.approx([math.log(p * p / 0.345) for p in PROBS], abs=1e-12)
    # ascending 0.029, 0.065, 0.181, 0.725 sum to 0.029, 0.094, 0.275: top_p 0.9 drops the two
    # below 0.1, which at temperature 1 (0.1, 0.25) would have kept the 0.15 token
    got, _ = logprobs_of(PROBS, [0, 1, 2, 3], temperature=0.5, top_p=0.9)
    assert got.tolist() == pytest.approx([math.log(0.8), math.log(0.2), -30.0, -30.0], abs=1e-12)
    # temperature 2 flattens them (square roots): the same top_p keeps every token
    got, _ = logprobs_of(PROBS, [3], temperature=2.0, top_p=0.9)
    assert got.tolist() == pytest.approx([math.log(math.sqrt(0.1) / sum(math.sqrt(p) for p in PROBS))], abs=1e-12)


def test_the_most_likely_token_is_always_kept():
    got, _ = logprobs_of(PROBS, [0, 1], temperature=1.0, top_p=1e-9)
    assert got.tolist() == [0.0, -30.0]
    # 0.5 alone reaches top_p 0.4: the nucleus is the top token even though others are near it
    got, _ = logprobs_of(PROBS, [0, 1], temperature=1.0, top_p=0.4)
    assert got.tolist() == [0.0, -30.0]


def test_a_tie_at_the_edge_counts_as_kept_with_the_share_of_it_vllm_keeps():
    # ascending 0.2, 0.2, 0.2, 0.4 sum to 0.2, 0.4, 0.6, 1.0: top_p 0.5 drops two positions, so
    # vLLM keeps 0.4 and one of the three 0.2s (which one its sort decides) and records
    # log(2/3) and log(1/3); each of the three may be the one sampled
    got, logits = logprobs_of([0.4, 0.2, 0.2, 0.2], [0, 1, 2, 3], temperature=1.0, top_p=0.5, grad=True)
    assert got.tolist() == pytest.approx([math.log(2 / 3), math.log(1 / 3), math.log(1 / 3), math.log(1 / 3)],
                                         abs=1e-12)
    # the kept share of the tie (1 of 3) spreads evenly: d log p(0) / d logits = onehot - (2/3, 1/9, 1/9, 1/9)
    got[0].backward()
    assert logits.grad[0].tolist() == pytest.approx([1 / 3, -1 / 9, -1 / 9, -1 / 9], abs=1e-12)


def test_the_gradient_flows_through_the_kept_logits_only_and_a_token_outside_has_none():
    got, logits = logprobs_of(PROBS, [0, 1, 2], temperature=0.5, top_p=0.9, grad=True)
    got.sum().backward()
    # d log p(v) / d logits = (onehot(v) - q) / temperature over the nucleus, q = (0.8, 0.2, 0, 0)
    assert logits.grad[0].tolist() == pytest.approx([0.4, -0.4, 0.0, 0.0], abs=1e-12)
    assert logits.grad[1].tolist() == pytest.approx([-1.6, 1.6, 0.0, 0.0], abs=1e-12)
    assert logits.grad[2].tolist() == [0.0, 0.0, 0.0, 0.0]  # the floored token: finite, no gradient


def test_a_token_outside_the_nucleus_keeps_the_loss_its_gradient_and_the_metrics_finite():
    """The learner's nucleus leaves out a token the actor sampled (logp_old -1.2): the decoupled
    loss with a KL to a reference that keeps it, and the off-policy sums, stay finite."""
    from aurora_rl.grpo.off_policy import off_policy_sums
    from aurora_rl.grpo.policy_loss import clipped_policy_loss, decoupled_policy_loss

    logits = torch.tensor([PROBS, PROBS], dtype=torch.float32).log().requires_grad_(True)
    new = sampling_logprobs(logits, torch.tensor([0, 3]), 1.0, 0.7)[None]  # [1, 2]: inside, outside
    ref = sampling_logprobs(logits.detach(), torch.tensor([0, 3]), 1.0, 1.0)[None]  # the reference keeps both
    old, mask = torch.tensor([[-0.4, -1.2]]), torch.ones(1, 2, dtype=torch.bool)
    for loss in (decoupled_policy_loss(new, old, torch.tensor([1.0]), mask, ref_logprobs=ref, kl_coef=0.1),
                 clipped_policy_loss(new, old, torch.tensor([-1.0]), mask, ref_logprobs=ref, kl_coef=0.1)):
        (grad,) = torch.autograd.grad(loss.loss, logits, retain_graph=True)
        assert math.isfinite(loss.loss.item()) and math.isfinite(loss.kl) and torch.isfinite(grad).all()
    sums = off_policy_sums(new, old, mask, torch.tensor([0]), 2.0)
    assert all(math.isfinite(v) for v in sums.values())
    assert sums["lag0_abs_diff_sum"] == pytest.approx(abs(math.log(2 / 3) + 0.4) + 30.0 - 1.2, abs=1e-5)


def test_a_row_of_non_finite_logits_stays_non_finite_and_is_not_floored():
    """A blown-up weight gives NaN logits: each of its tokens' log-probabilities is NaN (so the
    step's loss is, and every rank skips the step), never the finite floor."""
    logits = torch.tensor([PROBS, PROBS], dtype=torch.float64).log()
    logits[1, 2] = float("nan")
    got = sampling_logprobs(logits, torch.tensor([0, 3]), 1.0, 0.7)
    assert got[0].item() == pytest.approx(math.log(2 / 3)) and math.isnan(got[1].item())


def test_greedy_and_bad_top_p_are_refused():
    logits, targets = torch.zeros(1, 4), torch.tensor([0])
    with pytest.raises(ValueError, match="temperature 0.0: below 1e-05 vLLM decodes greedily"):
        sampling_logprobs(logits, targets, 0.0, 0.9)
    with pytest.raises(ValueError, match="top_p 0.0"):
        sampling_logprobs(logits, targets, 1.0, 0.0)


def test_temperature_one_and_top_p_one_give_the_raw_log_softmax_to_the_bit():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(7, 50, generator=g) * 4, torch.randint(0, 50, (7,), generator=g)
    raw = logits.log_softmax(-1).gather(-1, targets[:, None])[:, 0]
    assert torch.equal(sampling_logprobs(logits, targets), raw)
    assert torch.equal(sampling_logprobs(logits, targets, 1.0, 1.0), raw)
    # and in the policy: the GRPO learner's forward with these settings is SFT's forward
    policy, tok = make_policy(seed=2)
    policy.eval()  # no LoRA dropout: the forwards below see the same model
    batch = make_inputs(tok)
    with torch.no_grad():
        plain = policy(batch, with_masks=False).answer_logprobs
        same = policy(batch, with_masks=False, sampling=SamplingConfig(temperature=1.0, top_p=1.0)).answer_logprobs
        nucleus = policy(batch, with_masks=False, sampling=SamplingConfig(temperature=1.0, top_p=0.9)).answer_logprobs
    assert torch.equal(plain, same)
    # a nucleus renormalises: every token inside it gains -log(the nucleus' mass) > 0
    inside = policy(batch, with_masks=False).answer_mask & (nucleus != OUTSIDE_NUCLEUS_LOGPROB)
    assert inside.any() and ((nucleus - plain)[inside] > 0).all()
