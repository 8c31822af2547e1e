"""Class (and latent) conditioning: conditional BatchNorm in G, a projection term in D.

- :class:`ConditionalBatchNorm` (de Vries et al. 2017, as BigGAN uses it): BatchNorm without its own
  affine parameters, whose per-channel gain and bias are linear functions of a conditioning vector
  (a shared class embedding, and in BigGAN's hierarchical latent also a chunk of z).
- :class:`ClassProjection` (Miyato & Koyama 2018): D's logit gains ``<embed(y), h>``, the inner product
  of a learned class embedding with D's final feature vector.
- :class:`CondSequential`: a ``Sequential`` that hands the conditioning vector to the layers that take
  one, so a conditional network reads like the unconditional one.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ganforge.modules.spectral import maybe_spectral_norm

#: Size of the class embedding a conditional generator shares across its BatchNorms (BigGAN's 128).
SHARED_EMBEDDING_DIM = 128


class ConditionalBatchNorm(nn.Module):
    """BatchNorm (1d or 2d input) with gain ``1 + W_g c`` and bias ``W_b c`` from a condition ``c``."""

    takes_condition = True

    def __init__(self, num_features: int, cond_dim: int, spectral_norm: bool = False):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = maybe_spectral_norm(nn.Linear(cond_dim, num_features, bias=False), spectral_norm)
        self.bias = maybe_spectral_norm(nn.Linear(cond_dim, num_features, bias=False), spectral_norm)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # As (B, C, 1, 1), a (B, C) input gets exactly BatchNorm1d's statistics.
        out = self.bn(x) if x.dim() == 4 else self.bn(x[:, :, None, None])[:, :, 0, 0]
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)
        return out * (1 + self.gain(cond).view(shape)) + self.bias(cond).view(shape)


class ClassProjection(nn.Module):
    """The projection discriminator's class term: ``sum_k embed(y)_k * h_k`` for features ``h`` (B, F)."""

    def __init__(self, num_classes: int, features: int, spectral_norm: bool = False):
        super().__init__()
        self.embed = maybe_spectral_norm(nn.Embedding(num_classes, features), spectral_norm)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.embed(y) * h).sum(dim=1)


class CondSequential(nn.Sequential):
    """``Sequential`` whose conditional layers (``takes_condition``) also receive ``cond``."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, cond) if getattr(layer, "takes_condition", False) else layer(x)
        return x


def batchnorm(num_features: int, cond_dim: int = 0, spectral_norm: bool = False, dims: int = 2) -> nn.Module:
    """Plain BatchNorm (``dims`` 1 or 2) without a condition, conditional BatchNorm with one."""
    if cond_dim:
        return ConditionalBatchNorm(num_features, cond_dim, spectral_norm)
    return nn.BatchNorm2d(num_features) if dims == 2 else nn.BatchNorm1d(num_features)
