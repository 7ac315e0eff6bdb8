"""The torch half of answering clips, on the process's device.

Before sampling, ``embed_clips`` runs the media encoders and splices the prompts' embeddings;
after it, ``segment_answers`` runs the [SEG] pass over prompt + answer and lets SAM segment
every frame of each clip for the answers that hold a [SEG]. vLLM samples between the two in
rollout and evaluation actors (``actors/policy_engine.py``); ``bench/gpu_paths.py`` runs both
with the policy's own generation instead, on one GPU without vLLM.
"""

from __future__ import annotations

import numpy as np
import torch

from aurora_rl.data.clip_sample import ClipSample, batch_to, collate_clips
from aurora_rl.model.policy import AVSegPolicy, picture


@torch.no_grad()
def embed_clips(policy: AVSegPolicy, prompts: list[list[int]], clips: list[ClipSample], device
                ) -> tuple[dict, list[torch.Tensor]]:
    """The clips' batch on ``device`` and each prompt's embeddings [L_i, H] (media spliced in;
    float32 host copies, as vLLM takes them)."""
    batch = batch_to(collate_clips(clips), device)
    return batch, policy.prompt_embeds(prompts, batch["frames"], batch["fbank"], batch["fbank_lengths"])


@torch.no_grad()
def segment_answers(policy: AVSegPolicy, clips: list[ClipSample], batch: dict, embeds: list[torch.Tensor],
                    owner: list[int], answers: list[list[int]], mask_size: int) -> tuple[list[bool], np.ndarray]:
    """The [SEG] pass of ``answers`` (answer k answers clip ``owner[k]``, whose prompt
    embeddings are ``embeds[owner[k]]``): one batched prefill, then one SAM decode per clip
    for all its answers with a [SEG].

    Returns:
        has_seg per answer; float16 mask probabilities [K, T, M, M] on the CPU (zeros without [SEG]).
    """
    device = next(policy.parameters()).device
    on_device = [e.to(device) for e in embeds]  # once per clip; its G answers share them
    has, seg_embedding = policy.seg_embeddings([on_device[i] for i in owner], answers)
    probs = np.zeros((len(owner), batch["frames"].shape[1], mask_size, mask_size), dtype=np.float16)
    seg = policy.segmenter
    for i, clip in enumerate(clips):
        rows = [k for k, o in enumerate(owner) if o == i and bool(has[k])]
        if rows:
            frames = picture(batch["frames"][i], batch["frame_box"][i])
            image_emb = seg.encode(frames, cache_key=clip.vid)
            logits = seg.decode_prompts(image_emb, seg_embedding[rows][:, None, :], (mask_size, mask_size),
                                        tuple(frames.shape[-2:]))
            probs[rows] = logits.sigmoid().cpu().numpy().astype(np.float16)
    return [bool(h) for h in has], probs
