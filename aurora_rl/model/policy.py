"""The audio-visual segmentation policy (LISA-style, as AURORA).

vision encoder + audio encoder -> connectors -> spliced into the token embeddings of a
decoder-only LLM (LoRA via peft) -> the last-layer hidden state at the last ``[SEG]`` ->
``SegProjector`` -> one sparse prompt for SAM's mask decoder, which segments every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from aurora_rl.config.schema import SamplingConfig
from aurora_rl.data.media_prep import MediaPrep, video_frame_plan
from aurora_rl.model.embedding_splice import splice_media
from aurora_rl.model.sam_segmenter import NO_PROMPT_LOGIT
from aurora_rl.model.sampling_logprobs import sampling_logprobs


@dataclass
class TokenIds:
    seg: int
    video: int
    audio: int
    pad: int
    eos: int


@dataclass
class PolicyInputs:
    """A batch of B sequences = prompt + answer, with their clips.

    prompt_ids / answer_ids: B lists of token ids (answer may be empty: prompt only).
    frames: [B, T, 3, H, W] in [0, 1]. fbank: [B, F, bins]. fbank_lengths: [B].
    clip_keys: B ids for SAM's per-clip embedding cache (None: no caching).
    mask_frames: [B, k] frame indices to segment (None: all T). Training may supervise a few
        random frames per clip: one [SEG] prompts every frame, so this is an unbiased, k/T
        cheaper estimate of the mask loss (the mask decoder dominates a CPU training step).
    frame_box: [B, 4] (top, left, height, width) of the picture in each clip's frame squares
        (None: the whole square); SAM segments that region.
    """

    prompt_ids: list[list[int]]
    answer_ids: list[list[int]]
    frames: torch.Tensor
    fbank: torch.Tensor
    fbank_lengths: Optional[torch.Tensor] = None
    clip_keys: Optional[list[str]] = None
    mask_frames: Optional[torch.Tensor] = None
    frame_box: Optional[torch.Tensor] = None

    def to(self, device) -> "PolicyInputs":
        """The same batch with its tensors on ``device`` (the process's device: the model's)."""
        def move(t):
            return None if t is None else t.to(device)

        return PolicyInputs(self.prompt_ids, self.answer_ids, move(self.frames), move(self.fbank),
                            move(self.fbank_lengths), self.clip_keys, move(self.mask_frames), move(self.frame_box))


def video_frames(frames: torch.Tensor, prep: MediaPrep) -> torch.Tensor:
    """The frames the vision encoder takes: [B, T, ...] -> [B, T', ...] by ``video_frame_plan``
    (repeated frames, or black ones appended)."""
    plan = video_frame_plan(frames.shape[1], prep)
    if plan == list(range(frames.shape[1])):
        return frames
    index = torch.tensor([max(i, 0) for i in plan], device=frames.device)
    out = frames.index_select(1, index)
    black = torch.tensor([i < 0 for i in plan], device=frames.device)
    return out.masked_fill(black.view(1, -1, *([1] * (frames.dim() - 2))), 0.0) if bool(black.any()) else out


def picture(frames: torch.Tensor, box: Optional[torch.Tensor]) -> torch.Tensor:
    """One clip's frames [T, 3, S, S] cut to the picture inside the square (box: [4] or None)."""
    if box is None:
        return frames
    top, left, height, width = (int(v) for v in box)
    return frames[..., top : top + height, left : left + width]


@dataclass
class PolicyOutput:
    # [B, A] log p(answer token | prefix), of the model's softmax or of the sampler's processed
    # distribution (``forward``'s ``sampling``); 0 where padded
    answer_logprobs: torch.Tensor
    answer_mask: torch.Tensor  # [B, A] bool, True on real answer tokens
    has_seg: torch.Tensor  # [B] bool
    seg_hidden: torch.Tensor  # [B, H] last-layer state at the last [SEG] (zeros where none)
    seg_embedding: torch.Tensor  # [B, D] projector output (SAM prompt); zeros where no [SEG]
    mask_logits: Optional[torch.Tensor]  # [B, T, M, M]; NO_PROMPT_LOGIT everywhere without [SEG]
    first_token_logits: torch.Tensor  # [B, V] logits after the prompt (what sampling starts from)


class AVSegPolicy(nn.Module):
    def __init__(self, llm: nn.Module, vision: nn.Module, audio: nn.Module, projector: nn.Module,
                 segmenter: nn.Module, ids: TokenIds, mask_size: int, prep: MediaPrep = MediaPrep()):
        super().__init__()
        self.prep = prep
        self.llm = llm
        self.vision = vision
        self.audio = audio
        self.projector = projector
        self.segmenter = segmenter
        self.ids = ids
        self.mask_size = mask_size

    # ------------------------------------------------------------------ parts of the LLM
    @property
    def base_lm(self) -> nn.Module:
        """The causal LM under the peft wrapper (LoRA layers are injected in place)."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.base_lm.get_input_embeddings()(ids)

    # ------------------------------------------------------------------ inputs
    def media_features(self, frames: torch.Tensor, fbank: torch.Tensor,
                       fbank_lengths: Optional[torch.Tensor] = None) -> list[dict[int, torch.Tensor]]:
        """Per clip: {video placeholder id: [Nv, H], audio placeholder id: [Na, H]}."""
        video = self.vision(video_frames(frames, self.prep))
        audio = self.audio(fbank, fbank_lengths)
        return [{self.ids.video: v, self.ids.audio: a} for v, a in zip(video, audio)]

    def spliced(self, ids: list[int], media: dict[int, torch.Tensor], prompt_len: Optional[int] = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of ``ids`` with the media placeholders of the first ``prompt_len`` ids spliced."""
        t = torch.tensor(ids, dtype=torch.long, device=next(self.parameters()).device)
        return splice_media(t, self.embed_ids(t), media, prompt_len)

    @torch.no_grad()
    def prompt_embeds(self, prompt_ids: list[list[int]], frames: torch.Tensor, fbank: torch.Tensor,
                      fbank_lengths: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """The prompts as vLLM ``prompt_embeds``: B tensors [L_i, H] (float32, on CPU)."""
        media = self.media_features(frames, fbank, fbank_lengths)
        return [self.spliced(ids, m)[0].float().cpu() for ids, m in zip(prompt_ids, media)]

    # ------------------------------------------------------------------ forward
    def forward(self, batch: PolicyInputs, with_masks: bool = True,
                sampling: Optional[SamplingConfig] = None) -> PolicyOutput:
        """The answers' log-probabilities, the [SEG] state and (``with_masks``) SAM's masks.

        ``sampling``: take ``answer_logprobs`` under the distribution these settings sample from
        (temperature, top-p nucleus: ``aurora_rl/model/sampling_logprobs.py``), as the rollout
        actors' vLLM records them; None: the model's own softmax (SFT, evaluation).
        """
        temperature, top_p = (1.0, 1.0) if sampling is None else (sampling.temperature, sampling.top_p)
        media = self.media_features(batch.frames, batch.fbank, batch.fbank_lengths)
        seqs, seg_pos, answer_pos, prompt_end = [], [], [], []
        for prompt, answer, m in zip(batch.prompt_ids, batch.answer_ids, media):
            emb, source = self.spliced(list(prompt) + list(answer), m, len(prompt))
            seqs.append(emb)
            in_answer = source >= len(prompt)
            answer_pos.append(torch.nonzero(in_answer).flatten())
            prompt_end.append(int(torch.nonzero(~in_answer).flatten()[-1]))
            is_seg = in_answer & (source >= 0)
            is_seg &= torch.tensor(list(prompt) + list(answer), device=source.device)[source.clamp(min=0)] == self.ids.seg
            seg_pos.append(int(torch.nonzero(is_seg).flatten()[-1]) if is_seg.any() else -1)

        lengths = [s.shape[0] for s in seqs]
        embeds = nn.utils.rnn.pad_sequence(seqs, batch_first=True)  # right padding
        attention = torch.zeros(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        for i, n in enumerate(lengths):
            attention[i, :n] = 1
        hidden = self.base_lm.model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        lm_head = self.base_lm.get_output_embeddings()

        b = len(seqs)
        a_max = max((len(a) for a in batch.answer_ids), default=0)
        logprobs = hidden.new_zeros(b, a_max)
        mask = torch.zeros(b, a_max, dtype=torch.bool, device=hidden.device)
        for i, (pos, answer) in enumerate(zip(answer_pos, batch.answer_ids)):
            if len(answer) == 0:
                continue
            logits = lm_head(hidden[i, pos - 1]).float()  # the state before each answer token predicts it
            target = torch.tensor(answer, device=logits.device)
            logprobs[i, : len(answer)] = sampling_logprobs(logits, target, temperature, top_p)
            mask[i, : len(answer)] = True
        first = lm_head(hidden[torch.arange(b), torch.tensor(prompt_end)]).float()

        has_seg = torch.tensor([p >= 0 for p in seg_pos], device=hidden.device)
        seg_hidden = torch.stack([hidden[i, p] if p >= 0 else hidden.new_zeros(hidden.shape[-1])
                                  for i, p in enumerate(seg_pos)])
        seg_embedding = self.projector(seg_hidden) * has_seg[:, None]
        masks = (self.masks(batch.frames, seg_embedding, has_seg, batch.clip_keys, batch.mask_frames, batch.frame_box)
                 if with_masks else None)
        return PolicyOutput(logprobs, mask, has_seg, seg_hidden, seg_embedding, masks, first)

    @torch.no_grad()
    def seg_embeddings(self, prompt_embeds: list[torch.Tensor], answer_ids: list[list[int]]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The [SEG] pass of sampled answers from their prompts' ready embeddings, all in one batch.

        What ``forward(..., with_masks=False)`` gives as ``has_seg`` / ``seg_embedding`` for the
        same prompts and answers, without running the media encoders again (the prompt embeddings
        already hold their splice) and without the LM head: rollouts need only the [SEG] state.

        Args:
            prompt_embeds: B tensors [L_i, H] from ``prompt_embeds`` (one may serve several answers).
            answer_ids: B lists of sampled token ids.
        Returns:
            has_seg [B] bool; seg_embedding [B, D] (zeros where an answer has no [SEG]).
        """
        param = next(self.parameters())
        seqs, seg_pos = [], []
        for prompt, answer in zip(prompt_embeds, answer_ids):
            ids = torch.tensor(answer, dtype=torch.long, device=param.device)
            seqs.append(torch.cat([prompt.to(param.device, param.dtype), self.embed_ids(ids)]))
            where = torch.nonzero(ids == self.ids.seg).flatten()
            seg_pos.append(prompt.shape[0] + int(where[-1]) if len(where) else -1)
        embeds = nn.utils.rnn.pad_sequence(seqs, batch_first=True)  # right padding, as in forward
        attention = torch.zeros(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        for i, seq in enumerate(seqs):
            attention[i, : seq.shape[0]] = 1
        hidden = self.base_lm.model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        has_seg = torch.tensor([p >= 0 for p in seg_pos], device=hidden.device)
        seg_hidden = torch.stack([hidden[i, p] if p >= 0 else hidden.new_zeros(hidden.shape[-1])
                                  for i, p in enumerate(seg_pos)])
        return has_seg, self.projector(seg_hidden) * has_seg[:, None]

    def masks(self, frames: torch.Tensor, seg_embedding: torch.Tensor, has_seg: torch.Tensor,
              clip_keys: Optional[list[str]] = None, mask_frames: Optional[torch.Tensor] = None,
              frame_box: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mask logits [B, T, M, M] (or [B, k, M, M] for ``mask_frames``) from SAM, one [SEG]
        prompt per clip for all its frames, over the picture (``frame_box``) of each frame."""
        out_size = (self.mask_size, self.mask_size)
        result = []
        for i in range(frames.shape[0]):
            n = frames.shape[1] if mask_frames is None else mask_frames.shape[1]
            if not bool(has_seg[i]):
                result.append(frames.new_full((n, *out_size), NO_PROMPT_LOGIT))
                continue
            key = clip_keys[i] if clip_keys else None
            clip = picture(frames[i], None if frame_box is None else frame_box[i])
            image_emb = self.segmenter.encode(clip, cache_key=key)
            if mask_frames is not None:
                image_emb = image_emb[mask_frames[i]]
            result.append(self.segmenter.decode(image_emb, seg_embedding[i][None, None], out_size,
                                                tuple(clip.shape[-2:])))
        return torch.stack(result)


CLIP_SECONDS = 10.0  # a Ref-AVS clip: the audio length when a backbone reads clips as they are
TEXT_TOKENS = 128  # the prompt's text around its media placeholders (Ref-AVS expressions: ~20 words)


@dataclass(frozen=True)
class ContextBudget:
    """The tokens one clip's sequence needs: media + prompt text + answer (vLLM's max_model_len)."""

    video: int
    audio: int
    text: int
    answer: int

    @property
    def total(self) -> int:
        return self.video + self.audio + self.text + self.answer

    def __str__(self) -> str:
        return f"{self.video} video + {self.audio} audio + {self.text} text + {self.answer} answer = {self.total}"


@torch.no_grad()
def context_budget(policy: AVSegPolicy, shape, answer_tokens: int, text_tokens: int = TEXT_TOKENS) -> ContextBudget:
    """What a clip of ``shape`` becomes in this policy, counted by running its media encoders once
    on a blank clip (frames, the frame plan, the audio length its preparation gives)."""
    import numpy as np

    from aurora_rl.data.audio_features import audio_features

    weight = next(policy.parameters())
    seconds = shape.prep.audio_seconds or CLIP_SECONDS
    fbank = audio_features(np.zeros(int(seconds * shape.sample_rate), np.float32), shape.audio_features,
                           shape.sample_rate, shape.fbank_bins)
    frames = torch.zeros(1, shape.num_frames, 3, shape.image_size, shape.image_size, device=weight.device,
                         dtype=weight.dtype)
    fbank = torch.from_numpy(fbank)[None].to(weight.device, weight.dtype)
    media = policy.media_features(frames, fbank, torch.tensor([fbank.shape[1]], device=weight.device))[0]
    return ContextBudget(media[policy.ids.video].shape[0], media[policy.ids.audio].shape[0], text_tokens,
                         answer_tokens)
