"""``build_policy``: the policy for any backbone, from its ModelConfig.

``tiny`` is random-initialised (``build.build_tiny_policy``, its word-level tokenizer given by the
caller). A pretrained backbone is loaded from ``cfg.path`` (``backbones.load_backbone``), its
tokenizer from the same folder with ``[SEG]``, ``<video>`` and ``<audio>`` added as special
tokens; then LoRA (``apply_lora``), SAM from ``cfg.sam.path`` and a fresh [SEG] projector.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aurora_rl.config.schema import ModelConfig
from aurora_rl.model.backbones import AUDIO_FEATURES, load_backbone
from aurora_rl.model.backbones.weight_loading import cast_parameters
from aurora_rl.model.build import MANIFEST, MediaShape, apply_lora, build_tiny_policy, token_ids
from aurora_rl.model.policy import AVSegPolicy
from aurora_rl.model.sam_checkpoint import build_tiny_sam, load_sam
from aurora_rl.model.sam_segmenter import SamSegmenter
from aurora_rl.model.seg_projector import SegProjector
from aurora_rl.prompts.answer_format import AUDIO, SEG, VIDEO


def backbone_tokenizer(folder: str | Path):
    """The backbone's tokenizer with the policy's special tokens added (a pad token if it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tok.add_tokens([SEG, VIDEO, AUDIO], special_tokens=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def grow_embeddings(llm, vocab: int) -> None:
    """Make room for ``vocab`` token ids; new rows are the mean of the old ones (as LLaVA/LISA).

    Only ever grows: released Qwen2 tables already have spare rows (152064 for 151665 tokens), and
    shrinking would cut ids the checkpoint was trained with. The mean is deterministic, so a
    rebuilt policy has the same frozen rows and checkpoints need not store them.
    """
    old = llm.get_input_embeddings().weight.shape[0]
    if vocab <= old:
        return
    llm.resize_token_embeddings(vocab, mean_resizing=False)
    with torch.no_grad():
        for table in (llm.get_input_embeddings().weight, llm.get_output_embeddings().weight):
            table[old:] = table[:old].float().mean(0).to(table.dtype)


def build_policy(cfg: ModelConfig, shape: MediaShape, seed: int = 0, tokenizer=None, device: str = "cpu"):
    """(AVSegPolicy, tokenizer) for ``cfg.backbone``.

    Args:
        cfg: the model config; for a pretrained backbone ``cfg.path`` is its released folder (an
            aurora_rl checkpoint folder is loaded with ``checkpoint.load_policy`` instead).
        shape: the clip shape; its ``audio_features`` must be what the backbone reads.
        seed: seeds what is random-initialised (the projector, LoRA A, a tiny SAM or backbone).
        tokenizer: required for ``tiny``; for pretrained backbones None loads the folder's.
    """
    if shape.audio_features != AUDIO_FEATURES[cfg.backbone]:
        raise ValueError(f"backbone {cfg.backbone!r} reads {AUDIO_FEATURES[cfg.backbone]} audio features, "
                         f"the media shape says {shape.audio_features!r}")
    if cfg.backbone == "tiny":
        if tokenizer is None:
            raise ValueError("the tiny backbone needs its word-level tokenizer (aurora_rl.model.tokenizer)")
        return build_tiny_policy(cfg, tokenizer, shape, seed), tokenizer
    if (Path(cfg.path) / MANIFEST).exists():
        raise ValueError(f"{cfg.path} is an aurora_rl checkpoint: load it with aurora_rl.model.checkpoint.load_policy")
    dtype = getattr(torch, cfg.dtype)
    tokenizer = tokenizer if tokenizer is not None else backbone_tokenizer(cfg.path)
    ids = token_ids(tokenizer)
    llm, vision, audio = load_backbone(cfg.backbone, cfg.path, dtype, device, shape.image_size)
    grow_embeddings(llm, len(tokenizer))
    llm.config.pad_token_id, llm.config.eos_token_id = ids.pad, ids.eos
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        t = cfg.tiny
        sam = (load_sam(cfg.sam.path, cfg.sam.input_size, dtype=dtype) if cfg.sam.path is not None else
               build_tiny_sam(cfg.sam.input_size, seed=seed + 1, patch_size=t.sam_patch, hidden_size=t.sam_hidden,
                              num_layers=t.sam_layers).to(dtype))
        segmenter = SamSegmenter.from_config(sam, cfg.sam)
        projector = SegProjector(llm.config.hidden_size, segmenter.prompt_dim)
        llm = apply_lora(llm, cfg.lora)
    vision.requires_grad_(cfg.lora.train_encoders)
    audio.requires_grad_(cfg.lora.train_encoders)
    policy = AVSegPolicy(llm, vision, audio, projector, segmenter, ids, shape.mask_size, shape.prep)
    return cast_parameters(policy.to(device), dtype), tokenizer
