"""BEATs, the audio encoder of VideoLLaMA2-AV (Chen et al. 2022, microsoft/unilm ``beats/``).

    Kaldi fbank [B, F, 128] -> (x - 15.41663) / (2 * 6.55582)
      -> patch_embedding: Conv2d(1, 512, 16, stride 16, no bias) -> [B, 512, F/16, 8]
      -> tokens in (time, frequency) order [B, F/16 * 8, 512] -> layer_norm -> post_extract_proj (512 -> 768)
      -> encoder: x + GELU(SamePad(weight-normed grouped Conv1d over tokens)) -> layer_norm
         -> 12 post-LN ("deep norm") layers with a T5-style bucketed relative position bias, gated
            per query (``gru_rel_pos``), computed once in layer 0 and shared by all layers
      -> [B, F/16 * 8, 768]  (no final norm: ``layer_norm_first`` is False)

Parameter names follow the checkpoint (``patch_embedding.weight``, ``encoder.pos_conv.0.weight_g``,
``encoder.layers.0.self_attn.grep_linear.weight`` ...). Written from VideoLLaMA2's copy of BEATs
(``videollama2/model/beats``), which takes the fbank as input and normalises the weight-normed
conv in float32 with eps 1e-6. Not kept: the AudioSet classifier (``predictor``), layer drop and
the layer-wise gradient scaling (training-time only; the encoder is frozen here unless
``lora.train_encoders``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

FBANK_MEAN = 15.41663
FBANK_STD = 6.55582


@dataclass
class BEATsConfig:
    """BEATs sizes (defaults: the BEATs_iter3+ checkpoint VideoLLaMA2-AV uses)."""

    input_patch_size: int = 16
    embed_dim: int = 512
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    conv_pos: int = 128
    conv_pos_groups: int = 16
    num_buckets: int = 320
    max_distance: int = 800

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], max_distance: int = 800) -> "BEATsConfig":
        """Read the sizes off the tensor shapes (``max_distance`` is not stored in the weights)."""
        layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers."))
        width = sd["encoder.layer_norm.weight"].shape[0]
        pos_v = sd["encoder.pos_conv.0.weight_v"]
        return cls(
            input_patch_size=sd["patch_embedding.weight"].shape[-1], embed_dim=sd["patch_embedding.weight"].shape[0],
            encoder_layers=layers, encoder_embed_dim=width,
            encoder_ffn_embed_dim=sd["encoder.layers.0.fc1.weight"].shape[0],
            encoder_attention_heads=sd["encoder.layers.0.self_attn.grep_a"].shape[1],
            conv_pos=pos_v.shape[2], conv_pos_groups=width // pos_v.shape[1],
            num_buckets=sd["encoder.layers.0.self_attn.relative_attention_bias.weight"].shape[0],
            max_distance=max_distance,
        )


def relative_buckets(length: int, num_buckets: int, max_distance: int, device=None) -> torch.Tensor:
    """T5-style bidirectional buckets of (key - query) distances -> [L, L] int64."""
    pos = torch.arange(length, device=device)
    rel = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    large = exact + (torch.log(rel.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return buckets + torch.where(rel < exact, rel, large)


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d with weight = g * v / ||v|| (norm over all but the kernel axis), then SamePad, GELU."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, L] -> [B, C, L]."""
        v = self.weight_v.float()
        v = v * torch.rsqrt(v.pow(2).sum((0, 1), keepdim=True) + 1e-6)
        w = self.weight_g * v.to(self.weight_v.dtype)
        y = F.conv1d(x, w, self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:  # SamePad: an even kernel with padding k/2 yields one extra step
            y = y[..., :-1]
        return F.gelu(y)


class BEATsAttention(nn.Module):
    """Self-attention with the gated relative position bias."""

    def __init__(self, dim: int, heads: int, num_buckets: int, with_bias_table: bool):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.grep_linear = nn.Linear(self.head_dim, 8)
        self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))
        if with_bias_table:
            self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, key_padding: Optional[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            x: [B, L, D]. bias: [H, L, L] relative position bias. key_padding: [B, L] True = padding.
        """
        b, n, _ = x.shape

        def heads(t):
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # [B, H, L, d]

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, n, 2, 4).sum(-1))  # [B, H, L, 2]
        gate = gates[..., :1] * (gates[..., 1:] * self.grep_a - 1.0) + 2.0  # [B, H, L, 1]
        mask = gate * bias[None]  # [B, H, L, L]
        if key_padding is not None:
            mask = mask.masked_fill(key_padding[:, None, None, :], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class BEATsLayer(nn.Module):
    """Post-LN transformer layer with deep-norm residual scaling alpha = (2 * layers) ** 0.25."""

    def __init__(self, cfg: BEATsConfig, first: bool):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = BEATsAttention(d, cfg.encoder_attention_heads, cfg.num_buckets, with_bias_table=first)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.alpha = (2 * cfg.encoder_layers) ** 0.25

    def forward(self, x: torch.Tensor, bias: torch.Tensor, key_padding: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, bias, key_padding))
        return self.final_layer_norm(x * self.alpha + self.fc2(F.gelu(self.fc1(x))))


class BEATsEncoder(nn.Module):
    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        self.cfg = cfg
        self.pos_conv = nn.Sequential(WeightNormConv1d(cfg.encoder_embed_dim, cfg.conv_pos, cfg.conv_pos_groups))
        self.layer_norm = nn.LayerNorm(cfg.encoder_embed_dim)
        self.layers = nn.ModuleList([BEATsLayer(cfg, first=i == 0) for i in range(cfg.encoder_layers)])

    def forward(self, x: torch.Tensor, key_padding: Optional[torch.Tensor] = None) -> torch.Tensor:
        if key_padding is not None:
            x = x.masked_fill(key_padding[..., None], 0.0)
        x = self.layer_norm(x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2))
        table = self.layers[0].self_attn.relative_attention_bias
        buckets = relative_buckets(x.shape[1], self.cfg.num_buckets, self.cfg.max_distance, x.device)
        bias = table(buckets).permute(2, 0, 1).float()  # [H, L, L]
        for layer in self.layers:
            x = layer(x, bias, key_padding)
        return x


class BEATs(nn.Module):
    """Fbank frames -> (F / patch) * (bins / patch) tokens of ``encoder_embed_dim``."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p, bias=False)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
                                  if cfg.embed_dim != cfg.encoder_embed_dim else nn.Identity())
        self.encoder = BEATsEncoder(cfg)

    def forward(self, fbank: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            fbank: [B, F, bins] Kaldi log mel (``kaldi_fbank``), zero-padded after ``lengths``.
            lengths: [B] valid frames (None: all). Tokens of time patches lying wholly in the padding
                are masked out as attention keys (and zeroed before the positional conv), so the
                other tokens do not depend on how much padding a batch adds.
        Returns:
            [B, F // p * bins // p, encoder_embed_dim], time-major.
        """
        x = (fbank - FBANK_MEAN) / (2 * FBANK_STD)
        x = self.patch_embedding(x.unsqueeze(1).to(self.patch_embedding.weight.dtype))  # [B, E, T', F']
        b, _, t, f = x.shape
        x = self.post_extract_proj(self.layer_norm(x.flatten(2).transpose(1, 2)))
        key_padding = None
        if lengths is not None:
            p = self.cfg.input_patch_size
            starts = torch.arange(t, device=x.device) * p
            key_padding = (starts[None, :] >= lengths.to(x.device)[:, None]).repeat_interleave(f, dim=1)
            if not key_padding.any():
                key_padding = None
        return self.encoder(x, key_padding)
