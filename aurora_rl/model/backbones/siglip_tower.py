"""The SigLIP vision tower as VideoLLaMA2 uses it: patch features of one hidden layer, no pooling head.

VideoLLaMA2's ``SiglipVisionTower`` runs ``SiglipVisionModel`` with all hidden states and keeps
``hidden_states[mm_vision_select_layer]`` (-2: the input of the last encoder layer), every patch
(SigLIP has no CLS token). Layers after the selected one, the post-layernorm and the pooling head
never touch the result, so they are not built: the tower here holds transformers'
``SiglipVisionEmbeddings`` and the first layers of ``SiglipEncoder`` under the checkpoint's names
(``vision_model.embeddings.*``, ``vision_model.encoder.layers.N.*``).

The folder is the one ``mm_vision_tower`` names (google/siglip-so400m-patch14-384: a full SigLIP
with text tower, ``model_type: siglip``) or a vision-only save (``siglip_vision_model``).
Preprocessing is done in torch: resize to the tower's ``image_size`` (bicubic, antialiased, as
the processor's PIL bicubic resize does approximately) and normalise with the folder's
``preprocessor_config.json`` mean/std (SigLIP: 0.5 / 0.5).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def read_siglip_config(folder: str | Path):
    """(SiglipVisionConfig, image mean, image std) of a SigLIP folder."""
    from transformers import SiglipVisionConfig

    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    vision = raw.get("vision_config", raw) if raw.get("model_type") == "siglip" else raw
    vision = {k: v for k, v in vision.items() if k not in ("model_type", "architectures", "transformers_version")}
    mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    pre = folder / "preprocessor_config.json"
    if pre.exists():
        p = json.loads(pre.read_text())
        mean, std = p.get("image_mean", mean), p.get("image_std", std)
    return SiglipVisionConfig(**vision), mean, std


class SiglipTower(nn.Module):
    """
    Args:
        config: SiglipVisionConfig of the full tower. select_layer: which hidden state to return
            (VideoLLaMA2's ``mm_vision_select_layer``; negative counts from the end, 0 = embeddings).
        mean, std: per-channel normalisation of [0, 1] pixels.
    """

    def __init__(self, config, select_layer: int = -2, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
        super().__init__()
        from transformers.models.siglip.modeling_siglip import SiglipEncoder, SiglipVisionEmbeddings

        keep = select_layer % (config.num_hidden_layers + 1)  # hidden_states has layers + 1 entries
        config = copy.deepcopy(config)
        config.num_hidden_layers = keep
        if getattr(config, "_attn_implementation", None) is None:
            config._attn_implementation = "sdpa"
        self.config = config
        self.vision_model = nn.Module()
        self.vision_model.embeddings = SiglipVisionEmbeddings(config)
        self.vision_model.encoder = SiglipEncoder(config)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def grid(self) -> int:
        return self.config.image_size // self.config.patch_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images: [N, 3, H, W] in [0, 1] (any size; resized to the tower's).
        Returns:
            [N, grid * grid, hidden] patch features, row-major.
        """
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False,
                                   antialias=True).clamp(0, 1)
        x = ((images - self.mean) / self.std).to(self.vision_model.embeddings.patch_embedding.weight.dtype)
        x = self.vision_model.embeddings(x)
        return self.vision_model.encoder(inputs_embeds=x).last_hidden_state
