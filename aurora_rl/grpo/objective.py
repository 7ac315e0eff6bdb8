"""The GRPO objective of one learner step (pure: tensors in, a loss and its parts out).

For the step's B completions (each with its advantage A_i and its sampling log-probabilities,
which the policy's and the reference's log-probabilities are taken to match: after temperature
and top-p, ``learner/grpo_step.py``):

    loss = sum_i w_policy_i * policy_i                       policy_i: the named policy loss of
                                                             completion i, mean over its tokens
                                                             (+ kl_coef * k3 KL to the reference)
         + sum_i w_mask_i * (mask_bce * BCE_i + mask_dice * Dice_i)
                                                             over the completions whose [SEG] mask
                                                             is learned: those with a [SEG] token
                                                             whose rollout IoU reached mask_min_iou
         + mix_ce * CE(the data mix's supervised rows)       ("every object ." rows, no [SEG])

The weights make each term a mean over the whole step, whatever part of it a forward pass
sees: w_policy shares the completions with tokens equally, w_mask the supervised frames of the
learned masks, and w_tokens (for the logged ratios) the tokens. A step taken in micro-batches,
each with ``grpo_loss`` of its rows, therefore sums to the gradient of the whole batch. The
off-policy statistics (aurora_rl/grpo/off_policy.py) are plain sums over the rows' tokens, which
add up the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import numpy as np
import torch

from aurora_rl.config.schema import ObjectiveConfig
from aurora_rl.grpo.off_policy import MASK_DRIFT_SUMS, mask_drift_sums, off_policy_sums
from aurora_rl.grpo.policy_loss import POLICY_LOSSES
from aurora_rl.model.mask_loss import mask_loss
from aurora_rl.model.policy import PolicyOutput
from aurora_rl.model.sft_loss import answer_ce


@dataclass
class ObjectiveBatch:
    """What the objective reads of a step's completions besides the model's outputs.

    advantages: [B] float32. old_logprobs: [B, L] sampling log-probabilities, 0 after each
    completion's end. learn_mask: [B] bool, the completion's mask is learned. gt_masks:
    [B, k, M, M] the supervised frames' ground truth; mask_valid: [B, k] bool. w_policy,
    w_mask, w_tokens: [B] float64 shares of the whole step (see the module docstring). lags: [B]
    int64, how many versions the completion's sampling policy was behind the learner's.
    sampled_masks: [B, k, M, M] bool, the actors' masks of the supervised frames (the reward's;
    all False where none); has_sampled_mask: [B] bool.
    """

    advantages: torch.Tensor
    old_logprobs: torch.Tensor
    learn_mask: torch.Tensor
    gt_masks: torch.Tensor
    mask_valid: torch.Tensor
    w_policy: np.ndarray
    w_mask: np.ndarray
    w_tokens: np.ndarray
    lags: torch.Tensor
    sampled_masks: torch.Tensor
    has_sampled_mask: torch.Tensor

    def select(self, rows: list[int]) -> "ObjectiveBatch":
        """The rows ``rows`` of the step, with their step-wide weights (a micro-batch)."""
        return ObjectiveBatch(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def step_batch(completions: list[np.ndarray], sampling_logprobs: list[np.ndarray], advantages: list[float],
               gt_masks: torch.Tensor, mask_valid: torch.Tensor, rollout_iou: list[float], seg_token: int,
               cfg: ObjectiveConfig, lags: Optional[list[int]] = None,
               sampled_masks: Optional[list[Optional[np.ndarray]]] = None) -> ObjectiveBatch:
    """The objective's view of a step's B completions.

    Args:
        completions: B arrays of completion token ids. sampling_logprobs: B arrays, one per token.
        advantages: B floats. rollout_iou: B IoU rewards of the rollout masks (0 without one).
        gt_masks: [B, k, M, M]. mask_valid: [B, k] bool. seg_token: the id of [SEG].
        lags: B policy lags (the learner's version minus the sampling one; None: all 0).
        sampled_masks: B arrays [k, M, M] of the actors' masks of the supervised frames, None for
            a completion without one (None: no completion has one).
    """
    learn = np.array([seg_token in c.tolist() for c in completions], dtype=bool)
    if cfg.mask_min_iou is not None:
        learn &= np.array([iou >= cfg.mask_min_iou for iou in rollout_iou], dtype=bool)
    lengths = np.array([len(c) for c in completions], dtype=np.float64)
    has_tokens = (lengths > 0).astype(np.float64)
    frames = (mask_valid.sum(1).numpy() * learn).astype(np.float64)
    old = torch.zeros(len(completions), max([len(lp) for lp in sampling_logprobs], default=0))
    for i, lp in enumerate(sampling_logprobs):
        old[i, : len(lp)] = torch.from_numpy(np.asarray(lp, dtype=np.float32))
    return ObjectiveBatch(advantages=torch.tensor(advantages, dtype=torch.float32), old_logprobs=old,
                          learn_mask=torch.from_numpy(learn), gt_masks=gt_masks, mask_valid=mask_valid,
                          w_policy=has_tokens / max(1.0, has_tokens.sum()), w_mask=frames / max(1.0, frames.sum()),
                          w_tokens=lengths / max(1.0, lengths.sum()),
                          lags=torch.tensor([0] * len(completions) if lags is None else lags, dtype=torch.int64),
                          **_sampled(sampled_masks, gt_masks))


def _sampled(masks: Optional[list[Optional[np.ndarray]]], gt_masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """``sampled_masks`` and ``has_sampled_mask`` of ``ObjectiveBatch`` (shaped as the ground truth)."""
    out = torch.zeros(gt_masks.shape, dtype=torch.bool)
    has = torch.zeros(gt_masks.shape[0], dtype=torch.bool)
    for i, mask in enumerate(masks or []):
        if mask is not None:
            if tuple(mask.shape) != tuple(gt_masks.shape[1:]):
                raise ValueError(f"completion {i}: the actor's masks {tuple(mask.shape)} are not shaped as its "
                                 f"supervised frames {tuple(gt_masks.shape[1:])}")
            out[i], has[i] = torch.from_numpy(np.asarray(mask, dtype=bool)), True
    return {"sampled_masks": out, "has_sampled_mask": has}


def grpo_loss(out: PolicyOutput, batch: ObjectiveBatch, cfg: ObjectiveConfig,
              ref_logprobs: Optional[torch.Tensor] = None, mix_out: Optional[PolicyOutput] = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of ``batch``'s rows, weighted by their share of the step, and its logged parts
    (weighted the same way, so that the parts of a step's micro-batches add up to the step's).

    Args:
        out: the policy's outputs on the rows: answer_logprobs [B, A], answer_mask [B, A] bool,
            has_seg [B] bool, mask_logits [B, k, M, M].
        ref_logprobs: [B, A] the frozen reference's log-probabilities (None: no KL term).
        mix_out: the outputs on the data mix's CE rows (None: none this pass).
    Returns:
        (loss, {"loss", "policy_loss", "kl", "clip_fraction", "ratio_mean", "mask_bce",
        "mask_dice", "tokens", the keys of ``off_policy_sums`` and ``mask_drift_sums``[, "mix_ce"]}).
    """
    logprobs = out.answer_logprobs
    width = logprobs.shape[1]
    old = torch.zeros_like(logprobs)
    known = min(width, batch.old_logprobs.shape[1])
    old[:, :known] = batch.old_logprobs[:, :known].to(logprobs)
    stats = POLICY_LOSSES[cfg.policy_loss](logprobs, old, batch.advantages.to(logprobs), out.answer_mask,
                                           cfg, ref_logprobs)
    w_policy, w_mask, w_tokens = (float(w.sum()) for w in (batch.w_policy, batch.w_mask, batch.w_tokens))
    loss = w_policy * stats.loss
    parts = {"policy_loss": w_policy * stats.policy_loss, "kl": w_policy * stats.kl,
             "clip_fraction": w_tokens * stats.clip_fraction, "ratio_mean": w_tokens * stats.ratio_mean,
             "mask_bce": 0.0, "mask_dice": 0.0, "tokens": int(out.answer_mask.sum()),
             **off_policy_sums(logprobs, old, out.answer_mask, batch.lags, cfg.is_cap)}
    parts.update(dict.fromkeys(MASK_DRIFT_SUMS, 0.0) if out.mask_logits is None else mask_drift_sums(
        out.mask_logits, out.has_seg, batch.sampled_masks, batch.has_sampled_mask, batch.gt_masks, batch.mask_valid))
    seg = out.has_seg & batch.learn_mask.to(out.has_seg.device)
    if seg.any():
        gt, valid = batch.gt_masks.to(out.mask_logits.device), batch.mask_valid.to(out.mask_logits.device)
        total, bce, dice = mask_loss(out.mask_logits[seg], gt[seg], valid[seg], cfg.mask_bce, cfg.mask_dice)
        loss = loss + w_mask * total
        parts.update(mask_bce=w_mask * float(bce.detach()), mask_dice=w_mask * float(dice.detach()))
    if mix_out is not None:
        ce = answer_ce(mix_out)
        loss = loss + cfg.mix_ce * ce
        parts["mix_ce"] = float(ce.detach())
    parts["loss"] = float(loss.detach())
    return loss, parts
