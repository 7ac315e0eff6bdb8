"""Generation with the policy's own (Hugging Face) LLM, and the [SEG] pass after it.

vLLM does the sampling in rollouts and evaluation; this path serves ``aurora-rl infer`` on
one clip and is the baseline the rollout benchmark compares against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from aurora_rl.model.policy import AVSegPolicy, PolicyInputs


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    mask_logits: torch.Tensor  # [T, M, M]
    has_seg: bool


@torch.no_grad()
def hf_generate(policy: AVSegPolicy, prompt_embeds: torch.Tensor, max_new_tokens: int, *, greedy: bool = True,
                temperature: float = 1.0, top_p: float = 1.0, num_return_sequences: int = 1,
                seed: Optional[int] = None, min_new_tokens: int = 0) -> list[list[int]]:
    """Sample from one prompt's embeddings [L, H]; returns the new token ids of each sequence (eos cut).

    ``min_new_tokens`` keeps eos away that long (benchmarks fix every length to ``max_new_tokens``).
    """
    if seed is not None:
        torch.manual_seed(seed)
    lm = policy.base_lm
    param = next(lm.parameters())
    emb = prompt_embeds[None].to(param.device, param.dtype)  # prompt_embeds are host copies (vLLM's input)
    out = lm.generate(
        inputs_embeds=emb, attention_mask=torch.ones(emb.shape[:2], dtype=torch.long, device=emb.device),
        max_new_tokens=max_new_tokens,
        do_sample=not greedy, temperature=temperature if not greedy else None, top_p=top_p if not greedy else None,
        num_return_sequences=num_return_sequences, eos_token_id=policy.ids.eos, pad_token_id=policy.ids.pad,
        min_new_tokens=min_new_tokens or None,
    )
    sequences = []
    for row in out.tolist():
        if policy.ids.eos in row:
            row = row[: row.index(policy.ids.eos)]
        sequences.append([t for t in row if t != policy.ids.pad])
    return sequences


@torch.no_grad()
def answer_clip(policy: AVSegPolicy, tokenizer, prompt_ids: list[int], frames: torch.Tensor, fbank: torch.Tensor,
                max_new_tokens: int = 150, greedy: bool = True, temperature: float = 1.0, top_p: float = 0.9,
                seed: Optional[int] = None, frame_box: Optional[tuple[int, int, int, int]] = None) -> Completion:
    """Reason about one clip and segment: generate, then the [SEG] pass for the masks.

    Args:
        frames: [T, 3, H, W] in [0, 1]. fbank: [F, bins]. frame_box: the picture inside the
            frame squares (None: all of them).
    """
    policy.eval()
    device = next(policy.parameters()).device  # the clip goes where the policy is
    frames, fbank = frames.to(device), fbank.to(device)
    embeds = policy.prompt_embeds([prompt_ids], frames[None], fbank[None])[0]
    tokens = hf_generate(policy, embeds, max_new_tokens, greedy=greedy, temperature=temperature, top_p=top_p,
                         seed=seed)[0]
    box = None if frame_box is None else torch.tensor([frame_box], device=device)
    out = policy(PolicyInputs([prompt_ids], [tokens], frames[None], fbank[None], frame_box=box))
    text = tokenizer.decode(tokens, skip_special_tokens=False)
    return Completion(tokens, text, out.mask_logits[0], bool(out.has_seg[0]))
