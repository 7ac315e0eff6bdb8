"""What a GRPO step logs of its completions, rewards and learner ranks (pure: no Ray, no I/O).

``completion_shares``: how long the sampled completions are, how many ran into the sampling
budget, how many reflect.

A completion that reaches ``max_new_tokens`` was cut: it has no final [SEG], so it scores as
malformed, and the group teaches the policy away from whatever made it long. A reflective
answer (a first path, the trigger, a corrected path) is the answer most at risk: its share is
logged next to the cut share, so a policy that stops reflecting because of the budget shows in
the curves.
"""

from __future__ import annotations

import numpy as np
import torch

from aurora_rl.grpo.advantages import group_spread_shares
from aurora_rl.prompts.answer_format import parse_answer
from aurora_rl.records import RolloutRecord

LEARNER_PARTS = ("loss", "policy_loss", "kl", "clip_fraction", "mask_bce", "mask_dice", "grad_norm")


def completion_shares(texts: list[str], lengths: list[int], max_new_tokens: int) -> dict[str, float]:
    """Mean completion length in tokens, the share that reached ``max_new_tokens`` (cut) and the
    share with more than one reasoning path (reflective)."""
    if len(texts) != len(lengths):
        raise ValueError(f"{len(texts)} completion texts but {len(lengths)} lengths")
    if not texts:
        return {"completion_tokens": 0.0, "truncated": 0.0, "reflective": 0.0}
    n = len(texts)
    return {"completion_tokens": sum(lengths) / n,
            "truncated": sum(length >= max_new_tokens for length in lengths) / n,
            "reflective": sum(parse_answer(text).attempts > 1 for text in texts) / n}


def step_metrics(records: list[RolloutRecord], rewards: np.ndarray, rank_stats: list[dict], rollouts: list[dict],
                 max_new_tokens: int, version: int) -> dict[str, float]:
    """The step's rewards (mean, by kind, spread within groups), the learner ranks' loss parts
    (mean over ranks), its completions' shares, sampling speed and the policy lag.

    Args:
        records: the step's learned completions. rewards: [groups, G] their total rewards.
        rank_stats: each learner rank's ``train_step`` result. rollouts: each rollout call's counts
            and timings. version: the policy version after the step.
    """
    kinds = sorted({k for r in records for k in (r.rewards or {}) if k != "total"})
    flat, small = group_spread_shares(torch.from_numpy(rewards))
    out = {"reward": float(rewards.mean()), "group_reward_std": float(rewards.std(axis=1).mean()),
           "groups_flat": flat, "groups_small_spread": small}
    for kind in kinds:
        out[f"reward_{kind}"] = float(np.mean([r.rewards[kind] for r in records]))
    for key in LEARNER_PARTS:
        out[key] = float(np.mean([s[key] for s in rank_stats]))
    out.update(completion_shares([r.completion_text for r in records], [len(r.completion_token_ids) for r in records],
                                 max_new_tokens))
    if "mix_ce" in rank_stats[0]:
        out["mix_ce"] = float(np.mean([s["mix_ce"] for s in rank_stats]))
    tokens = sum(r["tokens"] for r in rollouts)
    sample_s = max(r["sample_s"] for r in rollouts)
    out["tokens_per_s"] = tokens / sample_s if sample_s > 0 else 0.0
    out["seg_s"] = max(r["seg_s"] for r in rollouts)
    out["policy_lag"] = float(version - 1 - min(r.policy_version for r in records))
    return out
