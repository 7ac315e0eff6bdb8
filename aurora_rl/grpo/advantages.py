"""Group-relative advantages, chosen by name (``objective.advantage``).

Every prompt is sampled G times; a completion's advantage is its reward relative to its own
group:

    grpo      A = (r - mean_group) / (std_group + eps)      (GRPO)
    centered  A = r - mean_group                            (no std division, as Dr. GRPO)

The std is the population std over the G rewards (``unbiased=False``), so a group whose
rewards are all equal gets zero advantages: it carries no learning signal. Without the std
division, a group whose rewards differ by little gets small advantages instead of unit ones.
"""

from __future__ import annotations

from typing import Callable

import torch

AdvantageEstimator = Callable[[torch.Tensor, float], torch.Tensor]
ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}


def register_advantage(name: str) -> Callable[[AdvantageEstimator], AdvantageEstimator]:
    def add(fn: AdvantageEstimator) -> AdvantageEstimator:
        ADVANTAGE_ESTIMATORS[name] = fn
        return fn

    return add


@register_advantage("grpo")
def grpo_advantages(rewards: torch.Tensor, eps: float) -> torch.Tensor:
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    return centered / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)


@register_advantage("centered")
def centered_advantages(rewards: torch.Tensor, eps: float) -> torch.Tensor:
    return rewards - rewards.mean(dim=1, keepdim=True)


def group_advantages(rewards: torch.Tensor, estimator: str = "grpo", eps: float = 1e-4) -> torch.Tensor:
    """
    Args:
        rewards: [N, G] total reward of each completion, one row per prompt group.
        estimator: a name in ``ADVANTAGE_ESTIMATORS``.
        eps: added to the std so that near-uniform groups do not explode (``grpo``).
    Returns:
        [N, G] advantages.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [groups, G], got shape {tuple(rewards.shape)}")
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r} (known: {', '.join(ADVANTAGE_ESTIMATORS)})")
    return ADVANTAGE_ESTIMATORS[estimator](rewards, eps)


def group_spread_shares(rewards: torch.Tensor, small: float = 0.1) -> tuple[float, float]:
    """How much of a step's groups carry no signal, or only a small one.

    Returns (flat, small_spread): the share of groups whose rewards are all equal (zero
    advantages), and the share whose reward range is above zero but below ``small``. With std
    normalisation, a small-spread group's advantages are as large as those of a group where one
    answer found the object and another missed it, whatever made its rewards differ.
    """
    if rewards.dim() != 2 or rewards.shape[0] == 0:
        raise ValueError(f"rewards must be [groups, G] with at least one group, got shape {tuple(rewards.shape)}")
    spread = rewards.max(dim=1).values - rewards.min(dim=1).values
    flat = spread <= 1e-6
    return float(flat.float().mean()), float((~flat & (spread < small)).float().mean())
