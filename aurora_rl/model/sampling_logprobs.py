"""Log-probabilities of tokens under the distribution a sampler draws from (pure: tensors in).

Rollout actors sample with a temperature and top-p, and vLLM records each sampled token's
log-probability under that processed distribution (``logprobs_mode="processed_logprobs"``,
``actors/vllm_engine.py``), not under the model's raw softmax. The GRPO learner compares its
own log-probabilities with those, so it computes the same distribution from its logits:

    z        = logits / temperature
    nucleus  = the most likely tokens of softmax(z) that reach mass top_p (below)
    log p(v) = z_v - logsumexp(z over the nucleus)       v in the nucleus
             = OUTSIDE_NUCLEUS_LOGPROB                   otherwise

The nucleus is vLLM's top-p rule: with the probabilities of softmax(z) in increasing order, a
token is dropped when its probability plus those of all tokens below it is at most 1 - top_p;
the most likely token is always kept. Tied logits (common in bf16) are where a rule could part
from vLLM's: vLLM's sort orders them arbitrarily, so of a tie at the edge it keeps a number
fixed by the rule, but which members by chance. The values it keeps, and so its normaliser,
do not depend on that chance; here the normaliser holds the same values, the tie's kept share
spread evenly over its members (so the gradient treats them alike), and every member of the
tie counts as inside for the sampled token (vLLM kept it, since it sampled it). ``top_p = 1``
keeps every token and ``temperature = 1`` scales nothing: the raw log-softmax, to the bit.

A sampled token the learner leaves out of its nucleus (its weights differ from the sampler's,
or the two land on either side of the edge by rounding) has probability 0 there. Its
log-probability is the finite floor ``OUTSIDE_NUCLEUS_LOGPROB`` = -30, without gradient:
-inf would make the ratios and importance weights 0 but the k3 KL (exp of the gap to the
reference) and the mismatch metric inf. Why -30: a token inside a nucleus has log-probability
above log((1 - top_p) / V) (it and the tokens below it, none likelier than it, hold more than
1 - top_p), about -14 for top_p 0.9 and -19 for 0.999 with a 150k vocabulary, so the floor sits
well under every kept token; and exp(30) ~ 1e13 keeps exp(logp_ref - floor) and its sums finite
in float32.
"""

from __future__ import annotations

import numpy as np
import torch

from aurora_rl.config.schema import GREEDY_TEMPERATURE

OUTSIDE_NUCLEUS_LOGPROB = -30.0


def nucleus_weights(scaled: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's share in the top-p nucleus of temperature-scaled logits [N, V] (float32): 1
    above its edge, 0 below, and for the tokens tied at the edge the part of the tie vLLM keeps,
    spread evenly (module docstring). Returns (log of the shares [N, V], the edge's logit [N, 1])."""
    ascending = scaled.sort(dim=-1).values
    below = ascending.softmax(-1).cumsum(-1)  # each token's probability and all smaller ones'
    # vLLM holds top_p in float32 and compares with 1 - top_p taken there
    cut = float(np.float32(1.0) - np.float32(top_p))
    dropped = (below <= cut).sum(-1, keepdim=True).clamp(max=scaled.shape[-1] - 1)  # the top token stays
    edge = ascending.gather(-1, dropped)
    above = scaled > edge
    tied = scaled == edge
    kept_of_tie = scaled.shape[-1] - dropped - above.sum(-1, keepdim=True)
    share = kept_of_tie.to(scaled.dtype) / tied.sum(-1, keepdim=True)
    log_share = torch.where(above, 0.0, torch.where(tied, share.log(), float("-inf")))
    return log_share, edge


def sampling_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                      top_p: float = 1.0) -> torch.Tensor:
    """log p(target) under softmax(logits / temperature) renormalised over its top-p nucleus
    (module docstring); differentiable through the nucleus' logits.

    Args:
        logits: [N, V] float32, the logits predicting each target.
        targets: [N] int64 token ids.
        temperature: >= GREEDY_TEMPERATURE (greedy decoding samples no distribution to weigh).
        top_p: in (0, 1]; 1 keeps every token.
    Returns:
        [N] log-probabilities; OUTSIDE_NUCLEUS_LOGPROB (no gradient) for a target outside its nucleus;
        NaN where the logits hold one (not floored: a non-finite loss skips the step).
    """
    if temperature < GREEDY_TEMPERATURE:
        raise ValueError(f"temperature {temperature}: below {GREEDY_TEMPERATURE} vLLM decodes greedily, "
                         "which has no sampling distribution to take log-probabilities of")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p {top_p}: must be in (0, 1]")
    scaled = logits if temperature == 1.0 else logits / temperature
    if top_p == 1.0:
        return scaled.log_softmax(-1).gather(-1, targets[:, None])[:, 0]
    target = scaled.gather(-1, targets[:, None])
    with torch.no_grad():
        log_share, edge = nucleus_weights(scaled, top_p)
    picked = target - (scaled + log_share).logsumexp(-1, keepdim=True)
    # a non-finite row (a weight blown up) stays non-finite: the step must see it and be skipped
    return torch.where((target >= edge) | picked.isnan(), picked, OUTSIDE_NUCLEUS_LOGPROB)[:, 0]
