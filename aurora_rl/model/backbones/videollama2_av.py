"""Loading VideoLLaMA2.1-7B-AV (DAMO-NLP-SG) from its local folder into policy parts.

The folder (as released, ``model_type: videollama2_qwen2``)::

    config.json         Qwen2 fields + mm_vision_tower (google/siglip-so400m-patch14-384),
                        mm_vision_select_layer (-2), mm_hidden_size (1152),
                        mm_projector_type (stc_connector_v35), mm_audio_tower,
                        mm_projector_a_type (mlp2x_gelu), ...
    model*.safetensors  (+ model.safetensors.index.json)
        model.embed_tokens / model.layers.N.* / model.norm / lm_head   -> Qwen2ForCausalLM
        model.mm_projector.{s1,sampler,s2,readout}.*                  -> STCConnector
        model.audio_tower.*                                            -> BEATs
        model.mm_projector_a.{0,2}.*                                   -> Linear, GELU, Linear
    tokenizer files     (Qwen2)

The SigLIP weights are not in the folder: VideoLLaMA2 loads them from ``mm_vision_tower``. That
name is looked up as a path, then as ``<folder>/<basename>``, then next to the folder
(``<folder>/../<basename>``), so a copy of google/siglip-so400m-patch14-384 placed beside the
model is found. Tensors under ``model.vision_tower.vision_tower.*``, when a fine-tuned save holds
them, override the tower folder's.

Inputs to the LLM, as VideoLLaMA2-AV builds them: the clip's video tokens, then its audio tokens
(it replaces one ``<video>`` placeholder with both; our prompt puts ``<video> <audio>`` side by
side, which splices the same sequence). Assumptions we could not check against a released file
are marked ASSUMPTION in the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from aurora_rl.model.backbones.beats import BEATs, BEATsConfig
from aurora_rl.model.backbones.siglip_tower import SiglipTower, read_siglip_config
from aurora_rl.model.backbones.stc_connector import STCConnector
from aurora_rl.model.backbones.weight_loading import TensorView, WeightFiles, assign_weights, empty_init

LLM_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "use_sliding_window",
              "sliding_window", "max_window_layers", "bos_token_id", "eos_token_id", "attention_dropout")
STC_SAMPLER_PADDING = {"stc_connector_v35": 0, "stc_connector": 1}
MM_PREFIXES = ("model.mm_projector.", "model.mm_projector_a.", "model.audio_tower.", "model.vision_tower.")


class VideoLLaMA2Vision(nn.Module):
    """Frames -> SigLIP patch features per frame -> STC connector -> video tokens."""

    def __init__(self, tower: SiglipTower, connector: STCConnector):
        super().__init__()
        self.tower = tower
        self.connector = connector

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """
        Args:
            frames: [B, T, 3, H, W] in [0, 1].
        Returns:
            [B, T/2 * (g/2)^2, hidden] (g = SigLIP grid; 5 * 13 * 13 = 845 tokens for 10 frames at 384 px).
        """
        b, t = frames.shape[:2]
        feats = self.tower(frames.flatten(0, 1))  # [B*T, g*g, C]
        g = self.tower.grid
        return self.connector(feats.view(b, t, g, g, -1))


class VideoLLaMA2Audio(nn.Module):
    """Kaldi fbank -> BEATs -> ``mm_projector_a`` (mlp2x_gelu) -> audio tokens."""

    def __init__(self, beats: BEATs, hidden: int):
        super().__init__()
        self.beats = beats
        width = beats.cfg.encoder_embed_dim
        self.projector = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))

    def forward(self, fbank: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            fbank: [B, F, 128] ``kaldi_fbank`` features. lengths: [B] valid frames.
        Returns:
            [B, F // 16 * 8, hidden] (496 tokens for 10 s of audio).
        """
        return self.projector(self.beats(fbank, lengths))


@dataclass
class VideoLLaMA2Spec:
    """Everything needed to build the architecture (no weights)."""

    llm: object  # transformers Qwen2Config
    siglip: object  # SiglipVisionConfig
    siglip_folder: Optional[Path]
    select_layer: int = -2
    image_mean: tuple = (0.5, 0.5, 0.5)
    image_std: tuple = (0.5, 0.5, 0.5)
    stc_type: str = "stc_connector_v35"
    beats: BEATsConfig = field(default_factory=BEATsConfig)


def llm_config(raw: dict):
    """A Qwen2Config from the Qwen2 fields of a config.json (old ``rope_theta`` or new ``rope_parameters``)."""
    from transformers import Qwen2Config

    fields = {k: raw[k] for k in LLM_FIELDS if k in raw}
    theta = raw.get("rope_theta") or (raw.get("rope_parameters") or {}).get("rope_theta", 1_000_000.0)
    # Untied even where the source ties them: [SEG] training gives lm_head and embed_tokens their
    # own trained copies anyway, and an explicit lm_head keeps the vLLM export plain Qwen2.
    return Qwen2Config(**fields, rope_parameters={"rope_type": "default", "rope_theta": float(theta)},
                       tie_word_embeddings=False, architectures=["Qwen2ForCausalLM"])


def find_tower_folder(name: str, folder: Path) -> Path:
    candidates = [Path(name), folder / Path(name).name, folder.parent / Path(name).name]
    for c in candidates:
        if (c / "config.json").exists():
            return c
    raise FileNotFoundError(
        f"{folder}: the vision tower {name!r} (mm_vision_tower) is not a local folder; put a copy of it at "
        f"one of {[str(c) for c in candidates]} (nothing is downloaded)")


def read_spec(folder: Path, weights: WeightFiles) -> VideoLLaMA2Spec:
    raw = json.loads((folder / "config.json").read_text())
    for key in ("mm_vision_tower", "mm_audio_tower"):
        if key not in raw:
            raise ValueError(f"{folder}/config.json has no {key!r}: not a VideoLLaMA2 audio-visual checkpoint")
    stc_type = raw.get("mm_projector_type", "stc_connector_v35")
    if stc_type not in STC_SAMPLER_PADDING:
        raise ValueError(f"{folder}: mm_projector_type {stc_type!r} is not supported ({list(STC_SAMPLER_PADDING)})")
    if raw.get("mm_projector_a_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise ValueError(f"{folder}: mm_projector_a_type {raw['mm_projector_a_type']!r} is not supported (mlp2x_gelu)")
    tower_folder = find_tower_folder(raw["mm_vision_tower"], folder)
    siglip, mean, std = read_siglip_config(tower_folder)
    # ASSUMPTION: VideoLLaMA2 builds BEATs from BEATsConfig() defaults (delay_load) and config.json
    # stores none of its sizes, so they are read off the tensor shapes (max_distance: default 800).
    beats = BEATsConfig.from_state_dict(beats_tensors(weights))
    return VideoLLaMA2Spec(llm=llm_config(raw), siglip=siglip, siglip_folder=tower_folder,
                           select_layer=raw.get("mm_vision_select_layer", -2), image_mean=tuple(mean),
                           image_std=tuple(std), stc_type=stc_type, beats=beats)


def build_modules(spec: VideoLLaMA2Spec):
    """(Qwen2ForCausalLM, VideoLLaMA2Vision, VideoLLaMA2Audio) with uninitialised weights."""
    from transformers import Qwen2ForCausalLM

    hidden = spec.llm.hidden_size
    llm = Qwen2ForCausalLM(spec.llm)
    tower = SiglipTower(spec.siglip, spec.select_layer, spec.image_mean, spec.image_std)
    vision = VideoLLaMA2Vision(tower, STCConnector(spec.siglip.hidden_size, hidden,
                                                   sampler_padding=STC_SAMPLER_PADDING[spec.stc_type]))
    return llm, vision, VideoLLaMA2Audio(BEATs(spec.beats), hidden)


def beats_tensors(weights: WeightFiles) -> TensorView:
    """The checkpoint's BEATs tensors under our names. The AudioSet classifier is dropped. The
    relative position table is one module shared by all layers: a state dict repeats it under
    every layer, a deduplicating save (safetensors) may keep any one name; it becomes layer 0's."""
    names = {}
    for ours, theirs in weights.with_prefix("model.audio_tower.").names.items():
        if ours.startswith("predictor."):
            continue
        if ours.endswith("self_attn.relative_attention_bias.weight"):
            ours = "encoder.layers.0.self_attn.relative_attention_bias.weight"
        ours = ours.replace(".parametrizations.weight.original0", ".weight_g")  # new-style weight_norm saves
        names[ours.replace(".parametrizations.weight.original1", ".weight_v")] = theirs
    return TensorView(weights, names)


def tower_tensors(spec: VideoLLaMA2Spec, weights: WeightFiles, tower: SiglipTower) -> dict:
    """The SigLIP tensors the truncated tower uses (text tower, later layers and head skipped);
    copies inside the model checkpoint (a fine-tuned tower) take precedence."""
    wanted = set(tower.state_dict().keys())
    files = WeightFiles(spec.siglip_folder)
    out = {name: files.get(name) for name in files.keys() if name in wanted}
    inside = weights.with_prefix("model.vision_tower.vision_tower.")
    out.update({name: inside[name] for name in inside if name in wanted})
    return out


def load_videollama2_av(folder: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """(llm, vision, audio) of a VideoLLaMA2-AV folder, weights in ``dtype`` on ``device``."""
    folder = Path(folder)
    weights = WeightFiles(folder)
    spec = read_spec(folder, weights)
    with empty_init():
        llm, vision, audio = build_modules(spec)
    llm_names = [n for n in weights.keys() if not n.startswith(MM_PREFIXES)]
    assign_weights(llm, ((n, weights.get(n)) for n in llm_names), dtype, device, "VideoLLaMA2 LLM")
    assign_weights(vision.tower, tower_tensors(spec, weights, vision.tower).items(), dtype, device, "SigLIP tower")
    assign_weights(vision.connector, weights.with_prefix("model.mm_projector.").items(), dtype, device,
                   "STC connector")
    assign_weights(audio.beats, beats_tensors(weights).items(), dtype, device, "BEATs")
    assign_weights(audio.projector, weights.with_prefix("model.mm_projector_a.").items(), dtype, device,
                   "audio projector")
    return llm, vision, audio
