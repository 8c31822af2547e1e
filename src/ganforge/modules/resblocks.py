"""Residual blocks of the SNGAN/BigGAN ResNet GANs (Miyato et al. 2018, Brock et al. 2019).

- :class:`GeneratorBlock` (a "ResUpBlock"): BN, ReLU, upsample, 3x3 conv, BN, ReLU, 3x3 conv, plus a skip
  that upsamples and applies a 1x1 conv.  Its BatchNorms are conditional when it gets a condition.
- :class:`DiscriminatorBlock`: ReLU, 3x3 conv, ReLU, 3x3 conv, average-pool; the skip is a 1x1 conv and
  average pooling.  ``first=True`` gives the "optimised" first block, which starts with a conv (no
  ReLU on the image) and pools before its skip conv.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.modules.conditional import batchnorm
from ganforge.modules.spectral import maybe_spectral_norm


class GeneratorBlock(nn.Module):
    takes_condition = True

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int = 0, spectral_norm: bool = False,
                 upsample: str = "nearest"):
        super().__init__()
        sn = lambda m: maybe_spectral_norm(m, spectral_norm)  # noqa: E731
        self.bn1 = batchnorm(in_ch, cond_dim, spectral_norm)
        self.conv1 = sn(nn.Conv2d(in_ch, out_ch, 3, 1, 1))
        self.bn2 = batchnorm(out_ch, cond_dim, spectral_norm)
        self.conv2 = sn(nn.Conv2d(out_ch, out_ch, 3, 1, 1))
        self.skip = sn(nn.Conv2d(in_ch, out_ch, 1))
        self.upsample = nn.Upsample(scale_factor=2, mode=upsample)
        self.conditional = cond_dim > 0

    def _bn(self, bn: nn.Module, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return bn(x, cond) if self.conditional else bn(x)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.upsample(F.relu(self._bn(self.bn1, x, cond)))
        h = self.conv1(h)
        h = self.conv2(F.relu(self._bn(self.bn2, h, cond)))
        return h + self.skip(self.upsample(x))


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, downsample: bool = True, first: bool = False,
                 spectral_norm: bool = False):
        super().__init__()
        sn = lambda m: maybe_spectral_norm(m, spectral_norm)  # noqa: E731
        self.conv1 = sn(nn.Conv2d(in_ch, out_ch, 3, 1, 1))
        self.conv2 = sn(nn.Conv2d(out_ch, out_ch, 3, 1, 1))
        self.downsample, self.first = downsample, first
        # A 1x1 conv on the skip only where the shape changes (identity otherwise, as in SNGAN).
        self.skip = sn(nn.Conv2d(in_ch, out_ch, 1)) if (in_ch != out_ch or downsample) else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip is None:
            return x
        # First block: pool, then 1x1 conv (cheaper on the image); later blocks: conv, then pool.
        return self.skip(self._pool(x)) if self.first else self._pool(self.skip(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        return self._pool(h) + self.shortcut(x)
