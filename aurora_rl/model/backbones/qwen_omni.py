"""Loading the Qwen2.5-Omni thinker (Qwen/Qwen2.5-Omni-7B, -3B) from its local folder into policy parts.

The folder (as released, ``model_type: qwen2_5_omni``)::

    config.json         thinker_config {audio_config, vision_config, text_config, ...}, talker_config,
                        token2wav_config (a thinker-only save: model_type qwen2_5_omni_thinker)
    model*.safetensors  thinker.audio_tower.*  -> transformers Qwen2_5OmniAudioEncoder
                        thinker.visual.*       -> transformers Qwen2_5OmniVisionEncoder
                        thinker.model.*        -> Qwen2ForCausalLM model.*   (same names below the prefix)
                        thinker.lm_head.weight -> lm_head.weight
                        talker.*, token2wav.*  (speech output: not used)
    preprocessor_config.json, tokenizer files

The thinker's decoder is Qwen2 (q/k/v with bias, SwiGLU MLP, RMSNorm) with multimodal rotary
positions (TMRoPE). Our path gives it one flat sequence of spliced embeddings with 1-D positions
(``splice_media``, sampled by vLLM through ``prompt_embeds``); with the three position axes equal,
TMRoPE's rotation is exactly 1-D RoPE, so the decoder is loaded as a plain ``Qwen2ForCausalLM``
(which vLLM serves as such). What that drops relative to native TMRoPE: see docs/BACKBONES.md.

Encoders take our tensors, not processor outputs:
- vision: frames [B, T, 3, H, W] in [0, 1] -> resized to ``image_size`` (a multiple of 28), CLIP
  mean/std normalised, frame pairs as temporal patches (an odd last frame repeated, as the Qwen
  video processor pads), patchified in the processor's order -> [B, T/2 * (S/28)^2, hidden].
- audio: ``whisper_log_mel`` [B, F, 128] with lengths -> each clip's valid frames through the
  audio tower (as ``get_audio_features`` does with a feature mask) -> [B, Na, hidden], Na = the
  longest clip's token count (shorter clips zero-padded at the end).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from aurora_rl.model.backbones.weight_loading import WeightFiles, assign_weights, empty_init

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def patchify_video(frames: torch.Tensor, patch: int, temporal: int, merge: int) -> torch.Tensor:
    """One clip's normalised frames [T, C, H, W] -> patch rows [T/tp * H/p * W/p, C * tp * p * p].

    Row order is the Qwen2-VL processor's: time, then merge blocks row-major, then the patches
    inside a block; each row holds (channel, frame in the pair, y, x).
    """
    t, c, h, w = frames.shape
    gt, gh, gw = t // temporal, h // patch, w // patch
    x = frames.reshape(gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * temporal * patch * patch)


class OmniVision(nn.Module):
    """Frames -> the thinker's vision encoder (with its patch merger) -> video tokens."""

    def __init__(self, visual: nn.Module, image_size: int, mean=CLIP_MEAN, std=CLIP_STD):
        super().__init__()
        cfg = visual.config
        self.unit = cfg.patch_size * cfg.spatial_merge_size
        if image_size % self.unit:
            raise ValueError(f"image_size {image_size} must be a multiple of {self.unit}")
        self.visual = visual
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """
        Args:
            frames: [B, T, 3, H, W] in [0, 1].
        Returns:
            [B, ceil(T/2) * (S/28)^2, hidden] with S = ``image_size``.
        """
        cfg = self.visual.config
        b, t = frames.shape[:2]
        s = self.image_size
        x = frames.flatten(0, 1).float()
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        x = ((x - self.mean) / self.std).view(b, t, 3, s, s)
        if t % cfg.temporal_patch_size:
            x = torch.cat([x, x[:, -1:].expand(-1, cfg.temporal_patch_size - t % cfg.temporal_patch_size,
                                                -1, -1, -1)], dim=1)
        rows = torch.cat([patchify_video(clip, cfg.patch_size, cfg.temporal_patch_size, cfg.spatial_merge_size)
                          for clip in x])
        grid = torch.tensor([[x.shape[1] // cfg.temporal_patch_size, s // cfg.patch_size, s // cfg.patch_size]] * b,
                            device=frames.device)
        out = self.visual(rows.to(self.visual.patch_embed.proj.weight.dtype), grid_thw=grid).pooler_output
        return out.view(b, -1, out.shape[-1])


class OmniAudio(nn.Module):
    """Whisper log-mel frames -> the thinker's audio tower -> audio tokens (25 per second)."""

    def __init__(self, audio_tower: nn.Module):
        super().__init__()
        self.audio_tower = audio_tower

    def forward(self, mel: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            mel: [B, F, 128] ``whisper_log_mel`` features, zero-padded after ``lengths``.
            lengths: [B] valid frames (None: all F).
        Returns:
            [B, Na, hidden], Na = ((L - 1) // 2 + 1 - 2) // 2 + 1 for the longest L; zeros after a
            shorter clip's tokens.
        """
        b, f = mel.shape[:2]
        lengths = torch.full((b,), f, device=mel.device) if lengths is None else lengths.to(mel.device).long()
        feats = torch.cat([mel[i, : int(n)] for i, n in enumerate(lengths)]).t()  # [bins, sum L]
        feats = feats.to(self.audio_tower.conv1.weight.dtype)
        out = self.audio_tower(feats, feature_lens=lengths).last_hidden_state
        _, counts = self.audio_tower._get_feat_extract_output_lengths(lengths)
        return nn.utils.rnn.pad_sequence(list(out.split(counts.tolist())), batch_first=True)


@dataclass
class OmniSpec:
    thinker: object  # Qwen2_5OmniThinkerConfig
    image_mean: tuple = CLIP_MEAN
    image_std: tuple = CLIP_STD


def thinker_config(raw: dict):
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniConfig, Qwen2_5OmniThinkerConfig)

    kind = raw.get("model_type")
    strip = ("model_type", "architectures", "transformers_version")
    if kind == "qwen2_5_omni":
        return Qwen2_5OmniConfig(**{k: v for k, v in raw.items() if k not in strip}).thinker_config
    if kind == "qwen2_5_omni_thinker":
        return Qwen2_5OmniThinkerConfig(**{k: v for k, v in raw.items() if k not in strip})
    raise ValueError(f"config.json model_type {kind!r} is not a Qwen2.5-Omni model")


def llm_config(text):
    """The Qwen2Config equal to the thinker's text model when positions are 1-D."""
    from transformers import Qwen2Config

    theta = (text.rope_parameters or {}).get("rope_theta", 1_000_000.0)
    return Qwen2Config(
        vocab_size=text.vocab_size, hidden_size=text.hidden_size, intermediate_size=text.intermediate_size,
        num_hidden_layers=text.num_hidden_layers, num_attention_heads=text.num_attention_heads,
        num_key_value_heads=text.num_key_value_heads, hidden_act=text.hidden_act,
        max_position_embeddings=text.max_position_embeddings, rms_norm_eps=text.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": float(theta)}, tie_word_embeddings=False,
        bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id, architectures=["Qwen2ForCausalLM"],
    )


def read_spec(folder: Path) -> OmniSpec:
    thinker = thinker_config(json.loads((folder / "config.json").read_text()))
    mean, std = CLIP_MEAN, CLIP_STD
    pre = folder / "preprocessor_config.json"
    if pre.exists():
        p = json.loads(pre.read_text())
        mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
    return OmniSpec(thinker, mean, std)


def build_modules(spec: OmniSpec, image_size: int):
    """(Qwen2ForCausalLM, OmniVision, OmniAudio) with uninitialised weights."""
    from transformers import Qwen2ForCausalLM
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoder, Qwen2_5OmniVisionEncoder)

    llm = Qwen2ForCausalLM(llm_config(spec.thinker.text_config))
    visual = Qwen2_5OmniVisionEncoder._from_config(spec.thinker.vision_config)
    audio = Qwen2_5OmniAudioEncoder._from_config(spec.thinker.audio_config)
    return llm, OmniVision(visual, image_size, spec.image_mean, spec.image_std), OmniAudio(audio)


def omni_image_size(image_size: int) -> int:
    """The nearest multiple of 28 (patch 14 x merge 2), at least 56."""
    return max(56, round(image_size / 28) * 28)


def load_qwen_omni(folder: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu",
                   image_size: int = 336):
    """(llm, vision, audio) of a Qwen2.5-Omni folder, weights in ``dtype`` on ``device``."""
    folder = Path(folder)
    weights = WeightFiles(folder)
    spec = read_spec(folder)
    with empty_init():
        llm, vision, audio = build_modules(spec, omni_image_size(image_size))
    prefix = "thinker." if any(n.startswith("thinker.") for n in weights.keys()) else ""
    thinker = weights.with_prefix(prefix)
    llm_tensors = {n: thinker[n] for n in thinker if n.startswith("model.")}
    llm_tensors["lm_head.weight"] = thinker["lm_head.weight"] if "lm_head.weight" in thinker \
        else llm_tensors["model.embed_tokens.weight"]  # tied checkpoints store no lm_head
    assign_weights(llm, llm_tensors.items(), dtype, device, "Omni thinker LLM")
    assign_weights(vision.visual, weights.with_prefix(prefix + "visual.").items(), dtype, device, "Omni vision")
    assign_weights(audio.audio_tower, weights.with_prefix(prefix + "audio_tower.").items(), dtype, device,
                   "Omni audio tower")
    return llm, vision, audio
