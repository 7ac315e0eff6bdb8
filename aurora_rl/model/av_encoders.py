"""The tiny backbone's vision and audio encoders, each with its connector into the LLM width.

Both keep the structure the task needs and little else: the vision tokens form a
``grid x grid`` map per temporal chunk (so "on the left" survives), the audio tokens follow
time (so "the first object to make a sound" survives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TokenScaleNorm(nn.Module):
    """LayerNorm whose gain starts at the token embeddings' std, so media tokens enter the LLM
    at the scale of the text tokens around them instead of dwarfing them (a random Qwen2's
    embeddings have std ``initializer_range`` = 0.02)."""

    def __init__(self, hidden: int, scale: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        nn.init.constant_(self.norm.weight, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


def connector(width: int, hidden: int, out_scale: float | None = None) -> nn.Sequential:
    """Two-layer MLP from encoder width to the LLM hidden size (as LLaVA-style projectors);
    ``out_scale``: end in a ``TokenScaleNorm`` with that initial gain (None: no norm)."""
    layers = [nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden)]
    if out_scale is not None:
        layers.append(TokenScaleNorm(hidden, out_scale))
    return nn.Sequential(*layers)


def vision_stem(kind: str, width: int) -> nn.Sequential:
    """Frames [N, 3, H, W] -> features [N, width, H/8, W/8].

    ``patch``: a 4x4 stride-4 patchify conv then two 3x3 convs (cheapest; fine detail of small
    objects is averaged away in the first layer). ``conv``: four 3x3 convs, the first at full
    resolution, then three stride-2 (sees texture and shape of objects a few pixels wide).
    """
    if kind == "patch":
        return nn.Sequential(
            nn.Conv2d(3, width // 2, 4, stride=4), nn.GELU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
    if kind == "conv":
        return nn.Sequential(
            nn.Conv2d(3, width // 4, 3, padding=1), nn.GELU(),
            nn.Conv2d(width // 4, width // 2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
        )
    raise ValueError(f"unknown vision stem {kind!r} (patch or conv)")


class TinyVisionEncoder(nn.Module):
    """Frames -> ``chunks * grid * grid`` tokens in the LLM width.

    Args:
        hidden: LLM hidden size. width: conv channels. grid: tokens per side. chunks: temporal
        chunks (frames averaged within a chunk, as a light STC-style temporal compression).
    """

    def __init__(self, hidden: int, width: int = 64, grid: int = 4, chunks: int = 2,
                 out_scale: float | None = None, stem: str = "patch"):
        super().__init__()
        self.grid, self.chunks = grid, chunks
        self.stem = vision_stem(stem, width)
        self.pos = nn.Parameter(torch.zeros(chunks * grid * grid, width))
        nn.init.normal_(self.pos, std=0.02)
        self.connector = connector(width, hidden, out_scale)

    @property
    def num_tokens(self) -> int:
        return self.chunks * self.grid * self.grid

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """
        Args:
            frames: [B, T, 3, H, W] float in [0, 1].
        Returns:
            [B, chunks * grid * grid, hidden].
        """
        b, t = frames.shape[:2]
        x = self.stem(frames.flatten(0, 1) * 2 - 1)  # [B*T, C, h, w]
        x = F.adaptive_avg_pool2d(x, self.grid).view(b, t, -1, self.grid * self.grid)  # [B, T, C, g*g]
        bounds = torch.linspace(0, t, self.chunks + 1).round().long().tolist()
        chunks = [x[:, lo:max(hi, lo + 1)].mean(dim=1) for lo, hi in zip(bounds[:-1], bounds[1:])]
        x = torch.stack(chunks, dim=1).transpose(2, 3).flatten(1, 2)  # [B, chunks*g*g, C]
        return self.connector(x + self.pos)


class TinyAudioEncoder(nn.Module):
    """Log-mel fbank frames -> ``num_tokens`` tokens in time order, in the LLM width."""

    def __init__(self, hidden: int, bins: int = 128, width: int = 64, num_tokens: int = 10,
                 out_scale: float | None = None, standardize: bool = False):
        super().__init__()
        self.num_tokens, self.standardize = num_tokens, standardize
        self.inp = nn.Linear(bins, width)
        self.conv = nn.Conv1d(width, width, 5, padding=2)
        self.pos = nn.Parameter(torch.zeros(num_tokens, width))
        nn.init.normal_(self.pos, std=0.02)
        self.connector = connector(width, hidden, out_scale)

    def forward(self, fbank: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            fbank: [B, F, bins] log-mel features, zero-padded after ``lengths``.
            lengths: [B] valid frames per clip (None: all F).
        Returns:
            [B, num_tokens, hidden]; token k summarises the k-th slice of the valid audio.
        """
        if self.standardize:
            fbank = standardize_fbank(fbank, lengths)
        x = F.gelu(self.inp(fbank)).transpose(1, 2)  # [B, C, F]
        if lengths is not None:  # padded frames must look like the conv's own zero padding
            x = x * (torch.arange(x.shape[2], device=x.device)[None] < lengths.to(x.device)[:, None])[:, None]
        x = F.gelu(self.conv(x))
        if lengths is None:
            pooled = F.adaptive_avg_pool1d(x, self.num_tokens)
        else:
            pooled = torch.stack(
                [F.adaptive_avg_pool1d(x[i : i + 1, :, : max(int(n), 1)], self.num_tokens)[0] for i, n in enumerate(lengths)]
            )
        return self.connector(pooled.transpose(1, 2) + self.pos)


def standardize_fbank(fbank: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Per clip, one mean and std over its valid frames and all bins: [B, F, bins] -> same shape.

    Log-mel energies are large offset numbers (mean ~14, std ~4 here); what carries the content
    is their contrast across time and frequency, which this keeps. Padding stays zero.
    """
    valid = torch.ones(fbank.shape[:2], dtype=torch.bool, device=fbank.device)
    if lengths is not None:
        valid = torch.arange(fbank.shape[1], device=fbank.device)[None] < lengths.to(fbank.device)[:, None]
    w = valid[..., None].to(fbank.dtype)
    count = (w.sum(dim=(1, 2)) * fbank.shape[2]).clamp(min=1)
    mean = (fbank * w).sum(dim=(1, 2)) / count
    var = (((fbank - mean[:, None, None]) * w) ** 2).sum(dim=(1, 2)) / count
    return (fbank - mean[:, None, None]) / (var.sqrt()[:, None, None] + 1e-5) * w
