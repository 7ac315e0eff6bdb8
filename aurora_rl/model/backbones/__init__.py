"""Pretrained audio-visual backbones, loaded from local folders in their released formats.

Each loader returns ``(llm, vision, audio)``: a ``Qwen2ForCausalLM`` (what vLLM serves), a module
mapping frames [B, T, 3, H, W] in [0, 1] to [B, Nv, hidden], and one mapping audio features
[B, F, bins] (+ lengths) to [B, Na, hidden]. ``aurora_rl.model.factory.build_policy`` assembles
them with LoRA, the [SEG] projector and SAM. Formats and assumptions: docs/BACKBONES.md.
"""

from __future__ import annotations

from pathlib import Path

import torch

# The audio features each backbone's audio encoder reads (aurora_rl.data.audio_features).
AUDIO_FEATURES = {"tiny": "kaldi_fbank", "videollama2-av": "kaldi_fbank", "qwen2.5-omni": "whisper_log_mel"}


def load_backbone(name: str, folder: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu",
                  image_size: int = 336):
    """(llm, vision, audio) of backbone ``name`` from ``folder``; ``image_size`` is used by Qwen2.5-Omni only
    (VideoLLaMA2's SigLIP has a fixed 384 px input)."""
    if name == "videollama2-av":
        from aurora_rl.model.backbones.videollama2_av import load_videollama2_av

        return load_videollama2_av(folder, dtype, device)
    if name == "qwen2.5-omni":
        from aurora_rl.model.backbones.qwen_omni import load_qwen_omni

        return load_qwen_omni(folder, dtype, device, image_size)
    raise ValueError(f"no pretrained loader for backbone {name!r}")
