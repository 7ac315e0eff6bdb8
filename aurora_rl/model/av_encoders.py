"""The tiny backbone's vision and audio encoders, each with its connector into the LLM width.

Both keep the structure the task needs and little else: the vision tokens form a
``grid x grid`` map per temporal chunk (so "on the left" survives), the audio tokens follow
time (so "the first object to make a sound" survives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def connector(width: int, hidden: int) -> nn.Sequential:
    """Two-layer MLP from encoder width to the LLM hidden size (as LLaVA-style projectors)."""
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden))


class TinyVisionEncoder(nn.Module):
    """Frames -> ``chunks * grid * grid`` tokens in the LLM width.

    Args:
        hidden: LLM hidden size. width: conv channels. grid: tokens per side. chunks: temporal
        chunks (frames averaged within a chunk, as a light STC-style temporal compression).
    """

    def __init__(self, hidden: int, width: int = 64, grid: int = 4, chunks: int = 2):
        super().__init__()
        self.grid, self.chunks = grid, chunks
        self.stem = nn.Sequential(
            nn.Conv2d(3, width // 2, 4, stride=4), nn.GELU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.pos = nn.Parameter(torch.zeros(chunks * grid * grid, width))
        nn.init.normal_(self.pos, std=0.02)
        self.connector = connector(width, hidden)

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

    def __init__(self, hidden: int, bins: int = 128, width: int = 64, num_tokens: int = 10):
        super().__init__()
        self.num_tokens = num_tokens
        self.inp = nn.Linear(bins, width)
        self.conv = nn.Conv1d(width, width, 5, padding=2)
        self.pos = nn.Parameter(torch.zeros(num_tokens, width))
        nn.init.normal_(self.pos, std=0.02)
        self.connector = connector(width, hidden)

    def forward(self, fbank: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            fbank: [B, F, bins] log-mel features, zero-padded after ``lengths``.
            lengths: [B] valid frames per clip (None: all F).
        Returns:
            [B, num_tokens, hidden]; token k summarises the k-th slice of the valid audio.
        """
        x = F.gelu(self.inp(fbank)).transpose(1, 2)  # [B, C, F]
        x = F.gelu(self.conv(x))
        if lengths is None:
            pooled = F.adaptive_avg_pool1d(x, self.num_tokens)
        else:
            pooled = torch.stack(
                [F.adaptive_avg_pool1d(x[i : i + 1, :, : max(int(n), 1)], self.num_tokens)[0] for i, n in enumerate(lengths)]
            )
        return self.connector(pooled.transpose(1, 2) + self.pos)
