"""GRPO policy losses, chosen by name (``objective.policy_loss``): ``clipped`` is PPO-style
clipped importance ratio per token against the sampling policy; ``decoupled`` clips against a
proximal policy and corrects for the sampling policy with truncated importance weights. Both
with an optional k3 KL.

For completion token t with advantage A (shared by all tokens of the completion):

  clipped
    ratio_t = exp(logp_new_t - logp_old_t)          (logp_old: sampling log-probabilities)
    loss_t  = -min(ratio_t * A, clip(ratio_t, 1 - clip_low, 1 + clip_high) * A)

  decoupled (for completions sampled with older weights: ``learner.max_policy_lag`` > 0)
    ratio_t = exp(logp_new_t - logp_prox_t)          (logp_prox: the proximal policy's)
    w_t     = min(exp(logp_prox_t - logp_old_t), is_cap)     (no gradient; is_cap None: no min)
    loss_t  = -w_t * min(ratio_t * A, clip(ratio_t, 1 - clip_low, 1 + clip_high) * A)

  kl_t    = exp(logp_ref_t - logp_new_t) - (logp_ref_t - logp_new_t) - 1      (k3, >= 0)

Every log-probability here is of one distribution, the one the actors sample from: softmax of
logits / temperature over the top-p nucleus. logp_old is what vLLM recorded at sampling time
(its processed log-probabilities); logp_new, logp_prox and logp_ref are the learner's and the
reference's under the same temperature and nucleus (aurora_rl/model/sampling_logprobs.py). A
token outside the learner's (or the reference's) nucleus has the finite floor -30 there, not
-inf: its ratio and weight are then about 0, and its k3 KL large but finite.

The proximal policy is the one the clip keeps the update close to, and ``w_t`` moves the
expectation from the sampling policy to it; the sampling policy itself may be several versions
old and is never clipped against. Here it is the learner's policy before the step's update, i.e.
``logp_prox = logp_new.detach()``: the learner takes exactly one optimizer step per batch
(micro-batches only accumulate its gradient), so the policy before that step is the current
one, ratio_t is 1 in value (the clip is never active) and its gradient is that of logp_new_t.
With several optimizer steps per batch (PPO epochs or mini-batches) logp_prox would have to be
computed once before the first of them, kept with the batch and passed in, and the clip would
then bound each later step's drift from it.

Reduction: mean over each completion's tokens, then mean over completions (GRPO's
sequence-mean), so a long completion does not outweigh a short one. KL is added as
``kl_coef * kl`` with the same reduction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch

from aurora_rl.grpo.off_policy import importance_weights

if TYPE_CHECKING:
    from aurora_rl.config.schema import ObjectiveConfig


@dataclass
class PolicyLossStats:
    loss: torch.Tensor  # scalar, differentiable
    policy_loss: float
    kl: float
    clip_fraction: float  # share of tokens where the clipped branch was taken
    ratio_mean: float  # of the clipped ratio (to the sampling policy, or to the proximal one)


def sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each row's masked tokens, then over rows with at least one token. [B, L] -> scalar."""
    mask = mask.to(values.dtype)
    per_row = (values * mask).sum(1) / mask.sum(1).clamp(min=1)
    has = mask.sum(1) > 0
    return per_row[has].mean() if has.any() else values.sum() * 0


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip_low: float, clip_high: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """-min(ratio * A, clip(ratio) * A) per token, and where the clipped branch was taken.
    ratio: [B, L]; advantages: [B] -> ([B, L], [B, L] bool)."""
    adv = advantages[:, None].to(ratio.dtype)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def reduce_policy_loss(per_token: torch.Tensor, clip_taken: torch.Tensor, ratio: torch.Tensor,
                       new_logprobs: torch.Tensor, mask: torch.Tensor, ref_logprobs: Optional[torch.Tensor],
                       kl_coef: float) -> PolicyLossStats:
    """The sequence-mean of the per-token loss [B, L], plus ``kl_coef`` times the k3 KL of
    ``new_logprobs`` to ``ref_logprobs`` (None: no KL term); ``mask`` [B, L] bool."""
    policy = sequence_mean(per_token, mask)
    total = policy
    kl_value = 0.0
    if ref_logprobs is not None:
        delta = (ref_logprobs - new_logprobs).masked_fill(~mask, 0.0)
        kl = sequence_mean(delta.exp() - delta - 1.0, mask)
        total = total + kl_coef * kl
        kl_value = float(kl.detach())
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        clip_frac = float((clip_taken & mask).sum() / n)
        ratio_mean = float((ratio * mask).sum() / n)
    return PolicyLossStats(total, float(policy.detach()), kl_value, clip_frac, ratio_mean)


def clipped_policy_loss(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.2,
                        ref_logprobs: Optional[torch.Tensor] = None, kl_coef: float = 0.0) -> PolicyLossStats:
    """
    Args:
        new_logprobs: [B, L] log p_theta of the completion tokens (differentiable).
        old_logprobs: [B, L] log p_old at sampling time.
        advantages: [B] one advantage per completion.
        mask: [B, L] bool, True on real completion tokens.
        ref_logprobs: [B, L] frozen reference log-probabilities (None: no KL term).
    """
    mask = mask.bool()
    ratio = (new_logprobs - old_logprobs).masked_fill(~mask, 0.0).exp()
    per_token, taken = clipped_surrogate(ratio, advantages, clip_low, clip_high)
    return reduce_policy_loss(per_token, taken, ratio, new_logprobs, mask, ref_logprobs, kl_coef)


def decoupled_policy_loss(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                          mask: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.2,
                          is_cap: Optional[float] = 2.0, ref_logprobs: Optional[torch.Tensor] = None,
                          kl_coef: float = 0.0) -> PolicyLossStats:
    """The clipped loss against the proximal policy (``new_logprobs.detach()``), each token
    weighted by its truncated importance weight from the sampling policy (module docstring).

    Args:
        new_logprobs: [B, L] log p_theta of the completion tokens (differentiable).
        old_logprobs: [B, L] log p_old at sampling time, possibly by older weights.
        advantages: [B] one advantage per completion.
        mask: [B, L] bool, True on real completion tokens.
        is_cap: the weights' truncation (None: untruncated).
        ref_logprobs: [B, L] frozen reference log-probabilities (None: no KL term).
    """
    mask = mask.bool()
    prox = new_logprobs.detach()
    ratio = (new_logprobs - prox).masked_fill(~mask, 0.0).exp()
    per_token, taken = clipped_surrogate(ratio, advantages, clip_low, clip_high)
    weights = importance_weights(prox, old_logprobs, mask, is_cap)
    return reduce_policy_loss(weights * per_token, taken, ratio, new_logprobs, mask, ref_logprobs, kl_coef)


PolicyLoss = Callable[..., PolicyLossStats]
POLICY_LOSSES: dict[str, PolicyLoss] = {}


def register_policy_loss(name: str) -> Callable[[PolicyLoss], PolicyLoss]:
    """Add a policy loss ``fn(new_logprobs, old_logprobs, advantages, mask, cfg, ref_logprobs)``."""
    def add(fn: PolicyLoss) -> PolicyLoss:
        POLICY_LOSSES[name] = fn
        return fn

    return add


@register_policy_loss("clipped")
def clipped(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
            cfg: "ObjectiveConfig", ref_logprobs: Optional[torch.Tensor] = None) -> PolicyLossStats:
    """``clipped_policy_loss`` with the objective config's clip range and KL weight."""
    return clipped_policy_loss(new_logprobs, old_logprobs, advantages, mask, cfg.clip_low, cfg.clip_high,
                               ref_logprobs, cfg.kl_coef)


@register_policy_loss("decoupled")
def decoupled(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              cfg: "ObjectiveConfig", ref_logprobs: Optional[torch.Tensor] = None) -> PolicyLossStats:
    """``decoupled_policy_loss`` with the objective config's clip range, weight cap and KL weight."""
    return decoupled_policy_loss(new_logprobs, old_logprobs, advantages, mask, cfg.clip_low, cfg.clip_high,
                                 cfg.is_cap, ref_logprobs, cfg.kl_coef)
