"""The [SEG] projector: the LLM's hidden state at [SEG] -> one SAM sparse prompt token."""

from __future__ import annotations

import torch
from torch import nn


class SegProjector(nn.Module):
    """Linear -> ReLU -> Linear, hidden -> hidden -> prompt_dim (LISA's ``text_hidden_fcs``).

    Args:
        hidden_size: the LLM's hidden size.
        prompt_dim: SAM's prompt width; pass ``SamSegmenter.prompt_dim`` (256 for released SAMs).
    """

    def __init__(self, hidden_size: int, prompt_dim: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, hidden_size)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, prompt_dim)

    def forward(self, seg_hidden: torch.Tensor) -> torch.Tensor:
        """
        Args:
            seg_hidden: [..., hidden_size] last-layer hidden states at [SEG] tokens.
        Returns:
            [..., prompt_dim] prompt embeddings, e.g. [1, 256] for one [SEG] to feed ``SamSegmenter.decode``.
        """
        return self.fc2(self.act(self.fc1(seg_hidden)))
