"""VideoLLaMA2's STC connector (spatial-temporal convolution) from vision features to the LLM width.

    frames' patch features [B, T, h, w, C]
      -> s1: RegNet stage (4 bottleneck blocks, C -> D) on each frame
      -> sampler: Conv3d kernel = stride = (2, 2, 2) + SiLU   (halves time, height and width)
      -> s2: RegNet stage (4 blocks, D -> D) on each downsampled frame
      -> readout: Linear, GELU, Linear (D -> D)              -> [B, T/2 * h/2 * w/2, D]

``mm_projector_type: stc_connector_v35`` (VideoLLaMA2.1, the AV model) samples without padding;
the older ``stc_connector`` pads the Conv3d by 1. The RegNet stage is timm's ``RegStage`` with
VideoLLaMA2's arguments (bottleneck ratio 1, group size 1 so the 3x3 conv is depthwise,
squeeze-excitation ratio 0.25 of the block input, SiLU, timm's ``LayerNorm2d`` made
``LayerNormAct2d`` by ``ConvNormAct``, eps 1e-5, a 1x1 conv + norm shortcut when the width
changes). timm is not a dependency: the blocks are written here under timm's parameter names
(``b1.conv1.conv.weight``, ``b1.conv1.bn.weight``, ``b1.se.fc1.weight``, ``b1.downsample.conv.weight``
...), so the checkpoint's ``model.mm_projector.*`` tensors load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of [N, C, H, W] (timm's LayerNormAct2d), optionally followed by SiLU."""

    def __init__(self, channels: int, act: bool):
        super().__init__(channels, eps=1e-5)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        x = x.permute(0, 3, 1, 2)
        return F.silu(x) if self.act else x


class ConvNorm(nn.Module):
    """Conv2d (no bias) then ChannelNorm (timm's ConvNormAct: the norm is named ``bn``)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
        self.bn = ChannelNorm(cout, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(silu(fc1(mean over H, W)))) with 1x1 convs, as timm's SEModule."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(F.silu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class RegBottleneck(nn.Module):
    """1x1 conv -> depthwise 3x3 conv -> SE -> 1x1 conv (no act), + shortcut, SiLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = ConvNorm(cin, cout, 1)
        self.conv2 = ConvNorm(cout, cout, 3, groups=cout)
        self.se = SqueezeExcite(cout, int(round(cin * 0.25)))
        self.conv3 = ConvNorm(cout, cout, 1, act=False)
        self.downsample = ConvNorm(cin, cout, 1, act=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.se(self.conv2(self.conv1(x))))
        return F.silu(y + self.downsample(x))


class RegStage(nn.Sequential):
    """``depth`` bottlenecks named b1..bN; the first maps ``cin`` to ``cout``."""

    def __init__(self, depth: int, cin: int, cout: int):
        super().__init__()
        for i in range(depth):
            self.add_module(f"b{i + 1}", RegBottleneck(cin if i == 0 else cout, cout))


class STCConnector(nn.Module):
    """
    Args:
        in_dim: vision feature width (``mm_hidden_size``, 1152 for SigLIP so400m).
        hidden: LLM hidden size. depth: blocks per RegNet stage (4). downsample: (t, h, w) kernel.
        sampler_padding: 0 for ``stc_connector_v35``, 1 for ``stc_connector``.
    """

    def __init__(self, in_dim: int, hidden: int, depth: int = 4, downsample=(2, 2, 2), sampler_padding: int = 0):
        super().__init__()
        self.s1 = RegStage(depth, in_dim, hidden)
        self.sampler = nn.Sequential(
            nn.Conv3d(hidden, hidden, kernel_size=downsample, stride=downsample, padding=sampler_padding), nn.SiLU())
        self.s2 = RegStage(depth, hidden, hidden)
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: [B, T, h, w, C] patch features of each frame.
        Returns:
            [B, T' * h' * w', hidden], time-major then row-major (T' = T // 2 etc. for v35).
        """
        b, t, h, w, c = x.shape
        x = self.s1(x.reshape(b * t, h, w, c).permute(0, 3, 1, 2))  # [B*T, D, h, w]
        x = x.view(b, t, *x.shape[1:]).transpose(1, 2)  # [B, D, T, h, w]
        x = self.sampler(x)
        t2 = x.shape[2]
        x = self.s2(x.transpose(1, 2).flatten(0, 1))  # [B*T', D, h', w']
        x = x.view(b, t2, *x.shape[1:]).permute(0, 1, 3, 4, 2).flatten(1, 3)  # [B, T'*h'*w', D]
        return self.readout(x)
