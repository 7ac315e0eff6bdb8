"""Assembling the policy from its parts (the ``tiny`` backbone; real backbones in their loaders)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from aurora_rl.config.schema import LoraConfig, ModelConfig
from aurora_rl.data.media_prep import MediaPrep, backbone_prep
from aurora_rl.model.av_encoders import TinyAudioEncoder, TinyVisionEncoder
from aurora_rl.model.policy import AVSegPolicy, TokenIds
from aurora_rl.model.sam_checkpoint import build_tiny_sam, load_sam
from aurora_rl.model.sam_segmenter import SamSegmenter
from aurora_rl.model.seg_projector import SegProjector
from aurora_rl.prompts.answer_format import AUDIO, SEG, VIDEO

MANIFEST = "aurora_model.json"  # the file that makes a folder an aurora_rl checkpoint (model/checkpoint.py)


@dataclass
class MediaShape:
    """How a clip is read for this policy (saved with the checkpoint, so inference reads alike)."""

    fbank_bins: int = 128
    mask_size: int = 64
    image_size: int = 64
    num_frames: int = 10
    sample_rate: int = 16000
    audio_features: str = "kaldi_fbank"
    prep: MediaPrep = field(default_factory=MediaPrep)

    def __post_init__(self):
        if isinstance(self.prep, dict):  # as read back from a checkpoint manifest
            self.prep = MediaPrep.from_dict(self.prep)

    @classmethod
    def for_run(cls, data, model: ModelConfig) -> "MediaShape":
        """The shape a run's data and model configs give: sizes from ``data``, the audio features
        and the preparation from the backbone (``model.video_frames`` / ``frame_fill`` where set)."""
        from aurora_rl.model.backbones import AUDIO_FEATURES

        return cls(data.fbank_bins, data.mask_size, data.image_size, data.num_frames, data.sample_rate,
                   AUDIO_FEATURES[model.backbone], backbone_prep(model.backbone, model.video_frames, model.frame_fill))

    def reader_options(self) -> dict:
        """What a dataset reader needs besides the DataConfig to read clips for this policy."""
        return {"features": self.audio_features, "prep": self.prep}


def token_ids(tokenizer) -> TokenIds:
    conv = tokenizer.convert_tokens_to_ids
    ids = TokenIds(seg=conv(SEG), video=conv(VIDEO), audio=conv(AUDIO),
                   pad=tokenizer.pad_token_id, eos=tokenizer.eos_token_id)
    unk = tokenizer.unk_token_id
    missing = [name for name, v in vars(ids).items() if v is None or (v == unk and name in ("seg", "video", "audio"))]
    if missing:
        raise ValueError(f"tokenizer lacks the special tokens {missing} (SEG, <video>, <audio>, pad, eos)")
    return ids


def tiny_llm(cfg: ModelConfig, vocab_size: int, ids: TokenIds) -> nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    t = cfg.tiny
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
        max_position_embeddings=1024, tie_word_embeddings=False, pad_token_id=ids.pad, eos_token_id=ids.eos,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config)


def apply_lora(llm: nn.Module, lora: LoraConfig) -> nn.Module:
    """Wrap the LLM with LoRA (peft); ``fully_trained`` modules are trained in full.

    Without LoRA the whole LLM is trained.
    """
    if not lora.enabled:
        llm.requires_grad_(True)
        return llm
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_cfg = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
        modules_to_save=list(lora.fully_trained) or None, bias="none",
    )
    return get_peft_model(llm, peft_cfg)


def build_tiny_policy(cfg: ModelConfig, tokenizer, shape: MediaShape, seed: int = 0) -> AVSegPolicy:
    """A random-initialised tiny policy; the same seed gives the same weights."""
    ids = token_ids(tokenizer)
    t = cfg.tiny
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        llm = tiny_llm(cfg, len(tokenizer), ids)
        out_scale = llm.config.initializer_range if t.media_norm else None
        vision = TinyVisionEncoder(t.hidden_size, t.encoder_width, t.vision_grid, t.vision_chunks, out_scale,
                                   t.vision_stem)
        audio = TinyAudioEncoder(t.hidden_size, shape.fbank_bins, t.encoder_width, t.audio_tokens, out_scale,
                                 standardize=t.media_norm)
        sam = (
            build_tiny_sam(cfg.sam.input_size, seed=seed + 1, patch_size=t.sam_patch, hidden_size=t.sam_hidden,
                           num_layers=t.sam_layers)
            if cfg.sam.path is None else load_sam(cfg.sam.path, cfg.sam.input_size)
        )
        segmenter = SamSegmenter.from_config(sam, cfg.sam)
        projector = SegProjector(t.hidden_size, segmenter.prompt_dim)
        llm = apply_lora(llm, cfg.lora)  # LoRA's A matrices are drawn here too: seeded
    vision.requires_grad_(cfg.lora.train_encoders)
    audio.requires_grad_(cfg.lora.train_encoders)
    policy = AVSegPolicy(llm, vision, audio, projector, segmenter, ids, shape.mask_size, shape.prep)
    return policy.to(getattr(torch, cfg.dtype))


def trainable_summary(policy: nn.Module) -> dict[str, int]:
    """Trainable parameter counts per top-level part (for logs and tests)."""
    out: dict[str, int] = {}
    for name, p in policy.named_parameters():
        if p.requires_grad:
            part = name.split(".")[0]
            out[part] = out.get(part, 0) + p.numel()
    return out
