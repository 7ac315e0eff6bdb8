"""GRPO policy losses, chosen by name (``objective.policy_loss``); ``clipped`` is PPO-style
clipped importance ratio per token with an optional k3 KL.

For completion token t with advantage A (shared by all tokens of the completion):

    ratio_t = exp(logp_new_t - logp_old_t)          (logp_old: sampling log-probabilities)
    loss_t  = -min(ratio_t * A, clip(ratio_t, 1 - clip_low, 1 + clip_high) * A)
    kl_t    = exp(logp_ref_t - logp_new_t) - (logp_ref_t - logp_new_t) - 1      (k3, >= 0)

Reduction: mean over each completion's tokens, then mean over completions (GRPO's
sequence-mean), so a long completion does not outweigh a short one. KL is added as
``kl_coef * kl`` with the same reduction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch

if TYPE_CHECKING:
    from aurora_rl.config.schema import ObjectiveConfig


@dataclass
class PolicyLossStats:
    loss: torch.Tensor  # scalar, differentiable
    policy_loss: float
    kl: float
    clip_fraction: float  # share of tokens where the clipped branch was taken
    ratio_mean: float


def sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each row's masked tokens, then over rows with at least one token. [B, L] -> scalar."""
    mask = mask.to(values.dtype)
    per_row = (values * mask).sum(1) / mask.sum(1).clamp(min=1)
    has = mask.sum(1) > 0
    return per_row[has].mean() if has.any() else values.sum() * 0


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
    log_ratio = (new_logprobs - old_logprobs).masked_fill(~mask, 0.0)
    ratio = log_ratio.exp()
    adv = advantages[:, None].to(new_logprobs.dtype)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
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
        clip_frac = float(((clipped < unclipped) & mask).sum() / n)
        ratio_mean = float((ratio * mask).sum() / n)
    return PolicyLossStats(total, float(policy.detach()), kl_value, clip_frac, ratio_mean)


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
