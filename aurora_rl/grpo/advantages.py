"""Group-relative advantages (GRPO).

Every prompt is sampled G times; a completion's advantage is its reward relative to its own
group: A = (r - mean_group) / (std_group + eps), or r - mean_group with std normalisation off.
The std is the population std over the G rewards (``unbiased=False``), so a group whose
rewards are all equal gets zero advantages: it carries no learning signal.
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, normalize_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """
    Args:
        rewards: [N, G] total reward of each completion, one row per prompt group.
        normalize_std: divide by the group std (GRPO) or only center (Dr. GRPO style).
        eps: added to the std so that near-uniform groups do not explode.
    Returns:
        [N, G] advantages.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [groups, G], got shape {tuple(rewards.shape)}")
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize_std:
        return centered
    return centered / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)


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
