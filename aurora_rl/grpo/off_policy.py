"""Importance weights of sampled tokens, and what a learner pass sums of them (pure: tensors in).

A completion sampled by a rollout actor with weights ``lag`` versions behind the learner's has
behaviour log-probabilities ``logp_behav``: vLLM's processed ones, of softmax(logits / temperature)
renormalised over the top-p nucleus, the distribution the token was drawn from. The learner's
``logp`` are of the same distribution from its own logits (aurora_rl/model/sampling_logprobs.py;
a token outside the learner's nucleus gets the floor -30, whence w_t ~ 0). For token t:

    w_t = exp(logp_t - logp_behav_t)          importance weight of the learner's policy
    w_t truncated: min(w_t, is_cap)

``off_policy_sums`` returns sums and counts, not means, so that the micro-batches of a rank and
the ranks of a step add up; ``aurora_rl/grpo/step_metrics.py`` turns the step's totals into

    is_ess              (sum w)^2 / (N sum w^2)   over the step's N tokens, untruncated w: 1 when
                                                  every weight is equal, 1/N when one token has all
    is_truncated        share of the N tokens with w_t > is_cap
    logprob_mismatch    mean |logp_t - logp_behav_t| over the tokens of lag-0 completions: the
                        actors' and the learner's log-probabilities of one token by the same weights
                        and the same sampling settings (0 up to numerics; a token the two place on
                        either side of the nucleus' edge adds about 30 + logp_behav_t)
    logprob_mismatch_k3 mean of exp(d) - d - 1, d = logp_t - logp_behav_t, over the same tokens
                        (k3 estimate of KL(actor || learner) from the actor's samples)

A completion's IoU reward is of the mask the actor's own [SEG] pass made, with the weights that
sampled it: the importance weights correct which tokens were drawn, not how the reward was
computed. ``mask_drift_sums`` compares, on the frames the learner supervises, the actor's mask
with the one the learner's current weights make of the same completion (``step_metrics``):

    mask_iou_sampled    mean IoU with the ground truth of the actors' masks (the reward's masks)
    mask_iou_learner    the same of the learner's masks: at lag 0 equal up to numerics; at lag k,
                        what k versions of learning changed in the masks the reward scored
    mask_agreement      mean IoU of the actor's mask with the learner's (1 when they coincide)

Each is a mean over completions with a [SEG] in both and a supervised frame, of the mean over
those frames. The IoU with the ground truth is the official per-frame J (``jaccard_per_frame``: a
frame with an empty ground truth scores the IoU of the backgrounds, as the reward does); two empty
masks agree fully.
"""

from __future__ import annotations

from typing import Optional

import torch

from aurora_rl.metrics.refavs_metrics import jaccard_per_frame

# the keys of ``off_policy_sums``: summed over a rank's micro-batches and over the ranks
OFF_POLICY_SUMS = ("is_weight_sum", "is_weight_sq_sum", "is_truncated_tokens", "lag0_tokens", "lag0_abs_diff_sum",
                   "lag0_k3_sum")
MASK_DRIFT_SUMS = ("drift_rows", "drift_iou_sampled_sum", "drift_iou_learner_sum", "drift_agreement_sum")


def importance_weights(logprobs: torch.Tensor, behaviour_logprobs: torch.Tensor, mask: torch.Tensor,
                       cap: Optional[float] = None) -> torch.Tensor:
    """min(exp(logprobs - behaviour_logprobs), cap) per token, 0 off the mask. [B, L] -> [B, L].

    Args:
        logprobs: [B, L] the learner's log-probabilities (taken as they are: detach for a weight).
        behaviour_logprobs: [B, L] the sampling policy's. mask: [B, L] bool, True on real tokens.
        cap: the truncation (None: untruncated).
    """
    mask = mask.bool()
    weights = (logprobs - behaviour_logprobs).masked_fill(~mask, 0.0).exp()
    if cap is not None:
        weights = weights.clamp(max=cap)
    return weights * mask


def off_policy_sums(logprobs: torch.Tensor, behaviour_logprobs: torch.Tensor, mask: torch.Tensor,
                    lags: torch.Tensor, cap: Optional[float]) -> dict[str, float]:
    """Sums over the rows' tokens (see the module docstring), in float64, without gradient.

    Args:
        logprobs: [B, L] the learner's log-probabilities. behaviour_logprobs: [B, L] the actors'.
        mask: [B, L] bool, True on real completion tokens. lags: [B] how many versions each row's
            sampling policy was behind the learner. cap: ``objective.is_cap`` (None: no token is
            counted as truncated).
    """
    with torch.no_grad():
        mask = mask.bool()
        diff = (logprobs.detach().double() - behaviour_logprobs.double()).masked_fill(~mask, 0.0)
        weights = diff.exp() * mask
        current = mask & (lags.to(mask.device) == 0)[:, None]
        truncated = int((weights > cap).sum()) if cap is not None else 0
        return {"is_weight_sum": float(weights.sum()), "is_weight_sq_sum": float((weights * weights).sum()),
                "is_truncated_tokens": truncated, "lag0_tokens": int(current.sum()),
                "lag0_abs_diff_sum": float((diff.abs() * current).sum()),
                "lag0_k3_sum": float(((diff.exp() - diff - 1.0) * current).sum())}


def agreement(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of two bool masks per frame, [..., H, W] -> [...]; two empty masks agree fully (1)."""
    a, b = a.flatten(-2), b.flatten(-2)
    inter = (a & b).sum(-1).double()
    union = (a | b).sum(-1).double()
    return torch.where(union == 0, torch.ones_like(union), inter / union.clamp(min=1.0))


def mask_drift_sums(mask_logits: torch.Tensor, has_seg: torch.Tensor, sampled: torch.Tensor,
                    has_sampled: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """Sums of the learner's and the actors' masks of the same completions (module docstring).

    Args:
        mask_logits: [B, k, M, M] the learner's. has_seg: [B] bool, the completion has [SEG].
        sampled: [B, k, M, M] bool, the actors' masks of the same frames. has_sampled: [B] bool,
            the record carries one. gt: [B, k, M, M]. valid: [B, k] bool, the frame is supervised.
    """
    with torch.no_grad():
        device = mask_logits.device
        valid = valid.to(device).bool()
        rows = has_seg.to(device).bool() & has_sampled.to(device).bool() & valid.any(1)
        if not rows.any():
            return dict.fromkeys(MASK_DRIFT_SUMS, 0.0)
        learner, actor = mask_logits[rows].detach() > 0, sampled[rows].to(device).bool()
        truth, valid = gt[rows], valid[rows]
        frames = valid.sum(1).double()

        def mean_over_frames(iou: torch.Tensor) -> float:
            return float(((iou.to(device) * valid).sum(1) / frames).sum())

        def truth_iou(masks: torch.Tensor) -> torch.Tensor:  # the official per-frame J of bool masks
            j = jaccard_per_frame(masks.flatten(0, 1).float(), truth.flatten(0, 1), 0.5, apply_sigmoid=False)
            return torch.from_numpy(j).view(masks.shape[:2])

        return {"drift_rows": float(rows.sum()), "drift_iou_sampled_sum": mean_over_frames(truth_iou(actor)),
                "drift_iou_learner_sum": mean_over_frames(truth_iou(learner)),
                "drift_agreement_sum": mean_over_frames(agreement(actor, learner))}
