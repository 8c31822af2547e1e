"""Self-attention over feature-map positions (SAGAN, Zhang et al. 2019; as BigGAN places it).

Queries and keys have C/8 channels, values C/2; keys and values are max-pooled 2x to cut the cost by
four.  The output is added to the input scaled by ``gamma``, which starts at 0, so at initialisation
the block is the identity and the network learns how much non-local context to use.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.modules.spectral import maybe_spectral_norm


class SelfAttention(nn.Module):
    def __init__(self, channels: int, spectral_norm: bool = False):
        super().__init__()
        sn = lambda m: maybe_spectral_norm(m, spectral_norm)  # noqa: E731
        self.qk_channels = max(1, channels // 8)
        self.v_channels = max(1, channels // 2)
        self.query = sn(nn.Conv2d(channels, self.qk_channels, 1, bias=False))
        self.key = sn(nn.Conv2d(channels, self.qk_channels, 1, bias=False))
        self.value = sn(nn.Conv2d(channels, self.v_channels, 1, bias=False))
        self.out = sn(nn.Conv2d(self.v_channels, channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        k = F.max_pool2d(self.key(x), 2).flatten(2).transpose(1, 2)  # (B, HW/4, C/8)
        v = F.max_pool2d(self.value(x), 2).flatten(2).transpose(1, 2)  # (B, HW/4, C/2)
        # SAGAN uses unscaled dot products: scale=1.
        attended = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, HW, C/2)
        attended = attended.transpose(1, 2).reshape(b, self.v_channels, h, w)
        return x + self.gamma * self.out(attended)
