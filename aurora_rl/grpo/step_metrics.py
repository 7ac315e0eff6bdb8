"""What a GRPO step logs of its completions, rewards and learner ranks (pure: no Ray, no I/O).

``completion_shares``: how long the sampled completions are, how many ran into the sampling
budget, how many reflect.

A completion that reaches ``max_new_tokens`` was cut: it has no final [SEG], so it scores as
malformed, and the group teaches the policy away from whatever made it long. A reflective
answer (a first path, the trigger, a corrected path) is the answer most at risk: its share is
logged next to the cut share, so a policy that stops reflecting because of the budget shows in
the curves.

``off_policy_metrics`` and ``staleness_shares``: how far the learned completions are from the
learner's policy (the formulas in aurora_rl/grpo/off_policy.py), from every rank's sums.
"""

from __future__ import annotations

import numpy as np
import torch

from aurora_rl.grpo.advantages import group_spread_shares
from aurora_rl.grpo.off_policy import MASK_DRIFT_SUMS, OFF_POLICY_SUMS
from aurora_rl.prompts.answer_format import parse_answer
from aurora_rl.records import RolloutRecord

LEARNER_PARTS = ("loss", "policy_loss", "kl", "clip_fraction", "ratio_mean", "mask_bce", "mask_dice", "grad_norm")


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


def off_policy_metrics(rank_stats: list[dict]) -> dict[str, float]:
    """The step's importance-weight and mismatch metrics from the ranks' ``off_policy_sums``
    (each summed over the rank's micro-batches) and token counts: is_ess, is_truncated (NaN
    without a token), logprob_mismatch, logprob_mismatch_k3 (NaN without a lag-0 token); and
    from their ``mask_drift_sums`` mask_iou_sampled, mask_iou_learner, mask_agreement (NaN without
    a completion whose mask both made)."""
    total = {key: sum(s[key] for s in rank_stats) for key in (*OFF_POLICY_SUMS, *MASK_DRIFT_SUMS, "tokens")}
    n, lag0, rows = total["tokens"], total["lag0_tokens"], total["drift_rows"]
    nan = float("nan")
    return {"is_ess": total["is_weight_sum"] ** 2 / (n * total["is_weight_sq_sum"]) if n else nan,
            "is_truncated": total["is_truncated_tokens"] / n if n else nan,
            "logprob_mismatch": total["lag0_abs_diff_sum"] / lag0 if lag0 else nan,
            "logprob_mismatch_k3": total["lag0_k3_sum"] / lag0 if lag0 else nan,
            "mask_iou_sampled": total["drift_iou_sampled_sum"] / rows if rows else nan,
            "mask_iou_learner": total["drift_iou_learner_sum"] / rows if rows else nan,
            "mask_agreement": total["drift_agreement_sum"] / rows if rows else nan}


def staleness_shares(records: list[RolloutRecord], version: int, max_lag: int = 0) -> dict[str, float]:
    """``groups_lag_<k>``: the share of the step's learned groups sampled k policy versions
    behind the learner's version before the step (``version - 1``; a group at its oldest
    record's lag), for k = 0 .. max(max_lag, the largest lag seen): the same keys every step."""
    lags: dict[str, int] = {}
    for r in records:
        lag = version - 1 - r.policy_version
        if lag < 0:
            raise ValueError(f"record {r.record_id} was sampled by policy version {r.policy_version}, "
                             f"after the learner's {version - 1}")
        lags[r.group_id] = max(lags.get(r.group_id, lag), lag)
    counts = np.bincount(np.array(list(lags.values()), dtype=np.int64), minlength=max_lag + 1)
    return {f"groups_lag_{k}": float(c / max(1, len(lags))) for k, c in enumerate(counts)}


def step_metrics(records: list[RolloutRecord], rewards: np.ndarray, rank_stats: list[dict], rollouts: list[dict],
                 max_new_tokens: int, version: int, max_lag: int = 0) -> dict[str, float]:
    """The step's rewards (mean, by kind, spread within groups), the learner ranks' loss parts
    (mean over ranks), its completions' shares, sampling speed, the policy lag, and how far the
    learned completions are off the learner's policy:

        policy_lag           the largest lag of a learned record
        groups_lag_<k>       share of the learned groups at lag k (``staleness_shares``)
        is_ess               normalised effective sample size of the untruncated importance weights
        is_truncated         share of the tokens whose weight is above objective.is_cap
        logprob_mismatch     mean |learner - actor| log-probability over the tokens of lag-0 records
        logprob_mismatch_k3  k3 KL(actor || learner) over the same tokens (NaN without lag-0 records)
        mask_iou_sampled     on the supervised frames: the ground-truth IoU of the actors' masks,
        mask_iou_learner     of the learner's masks of the same completions,
        mask_agreement       and the IoU of the two (aurora_rl/grpo/off_policy.py)

    Args:
        records: the step's learned completions. rewards: [groups, G] their total rewards.
        rank_stats: each learner rank's ``train_step`` result. rollouts: each rollout call's counts
            and timings. version: the policy version after the step. max_lag: groups_lag_<k> for
            k up to at least this (``learner.max_policy_lag``).
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
    out.update(staleness_shares(records, version, max_lag))
    out.update(off_policy_metrics(rank_stats))
    return out
