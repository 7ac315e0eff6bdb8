"""A tiny random Qwen2.5-Omni checkpoint in the released layout, and the reference thinker over it.

``config.json`` is transformers' ``Qwen2_5OmniConfig`` (thinker, talker and token2wav sections,
``model_type: qwen2_5_omni``); the weights are a random ``Qwen2_5OmniThinkerForConditionalGeneration``
under ``thinker.*`` plus stand-in ``talker.*`` / ``token2wav.*`` tensors the loader must skip,
sharded with an index file, next to a ``preprocessor_config.json`` and a Qwen2 tokenizer.
The reference is transformers' thinker itself, loaded from the same tensors: its own
``get_video_features`` / ``get_audio_features`` on processor-format inputs, and its text model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tests.model.backbone_fixtures import write_qwen2_tokenizer

HIDDEN = 128
IMAGE = 112  # 8 x 8 patches of 14 px, 4 x 4 merged tokens per frame pair, 2 x 2 attention windows
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def thinker_config(vocab: int):
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniThinkerConfig

    return Qwen2_5OmniThinkerConfig(
        audio_config=dict(num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128,
                          d_model=64, n_window=25, output_dim=HIDDEN),
        vision_config=dict(depth=2, hidden_size=64, num_heads=2, intermediate_size=128, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1],
                           out_hidden_size=HIDDEN),
        text_config=dict(vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]},
                         tie_word_embeddings=False),
    )


def write_qwen_omni(root: str | Path, seed: int = 0) -> Path:
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniThinkerForConditionalGeneration

    folder = Path(root) / "Qwen2.5-Omni-7B"
    folder.mkdir(parents=True, exist_ok=True)
    tok = write_qwen2_tokenizer(folder)
    thinker_cfg = thinker_config(len(tok) + 13)  # spare rows, as Qwen's 152064 > its 151665 tokens
    Qwen2_5OmniConfig(thinker_config=thinker_cfg.to_dict()).save_pretrained(folder)
    torch.manual_seed(seed)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(thinker_cfg)
    g = torch.Generator().manual_seed(seed)
    tensors = {"thinker." + k: v.clone() for k, v in thinker.state_dict().items()}
    tensors["thinker.model.embed_tokens.weight"] = torch.randn(len(tok) + 13, HIDDEN, generator=g)
    tensors["thinker.lm_head.weight"] = torch.randn(len(tok) + 13, HIDDEN, generator=g) * 0.2
    for name in [n for n in tensors if n.startswith("thinker.model.layers.") and n.endswith(("q_proj.weight",
                                                                                           "k_proj.weight"))]:
        tensors[name] = torch.randn(tensors[name].shape, generator=g) * 0.3  # sharp attention: positions matter
    tensors["talker.model.embed_tokens.weight"] = torch.randn(32, 16, generator=g)
    tensors["token2wav.code2wav_bigvgan_model.conv_pre.weight"] = torch.randn(8, 4, 3, generator=g)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: tensors[k].contiguous() for k in keys}, str(folder / file), metadata={"format": "pt"})
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}))
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "Qwen2VLImageProcessor", "feature_extractor_type": "WhisperFeatureExtractor",
         "image_mean": CLIP_MEAN.tolist(), "image_std": CLIP_STD.tolist(), "patch_size": 14,
         "temporal_patch_size": 2, "merge_size": 2, "feature_size": 128, "sampling_rate": 16000}))
    return folder


def reference_thinker(folder: Path):
    """transformers' thinker built from config.json and loaded with the raw ``thinker.*`` tensors."""
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniThinkerForConditionalGeneration

    cfg = Qwen2_5OmniConfig.from_pretrained(folder).thinker_config
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(cfg)
    raw = {}
    for f in sorted(folder.glob("*.safetensors")):
        raw.update(load_file(str(f)))
    thinker.load_state_dict({k[len("thinker."):]: v for k, v in raw.items() if k.startswith("thinker.")})
    return thinker.eval()


def processor_patches(frames: np.ndarray, patch: int = 14, temporal: int = 2, merge: int = 2) -> np.ndarray:
    """Qwen2-VL video preprocessing without resizing: [T, H, W, 3] in [0, 1] -> flattened patches.

    Written from the processor's ``_preprocess``: normalise, channels first, stack frame pairs,
    reshape/transpose (0, 3, 6, 4, 7, 2, 1, 5, 8), flatten.
    """
    x = ((frames - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2)  # T C H W
    t, c, h, w = x.shape
    gt, gh, gw = t // temporal, h // patch, w // patch
    x = x.reshape(gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * temporal * patch * patch)
