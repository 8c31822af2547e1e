"""Spectral normalisation (Miyato et al. 2018) through ``torch.nn.utils.parametrizations.spectral_norm``.

A spectral-norm layer keeps its trainable weight at ``layer.parametrizations.weight.original``;
``layer.weight`` is recomputed from it on every access, so initialisers must write the original (see
:func:`trainable_weight`), and the power-iteration vectors must be refreshed after they do (see
:func:`refresh_spectral_norm`), or the first steps normalise by the old weight's singular value.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


def maybe_spectral_norm(layer: nn.Module, enabled: bool) -> nn.Module:
    """``layer`` with spectral normalisation of its weight when ``enabled``."""
    return spectral_norm(layer) if enabled else layer


def has_spectral_norm(layer: nn.Module) -> bool:
    return parametrize.is_parametrized(layer, "weight") and any(
        type(p).__name__ == "_SpectralNorm" for p in layer.parametrizations.weight)


def trainable_weight(layer: nn.Module) -> torch.Tensor:
    """The parameter an initialiser should write: the original weight under a parametrization."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


@torch.no_grad()
def refresh_spectral_norm(model: nn.Module, iterations: int = 15) -> None:
    """Re-run the power method on every spectral-norm layer (after its weight was re-initialised)."""
    for layer in model.modules():
        if has_spectral_norm(layer):
            for p in layer.parametrizations.weight:
                if type(p).__name__ == "_SpectralNorm" and trainable_weight(layer).ndim > 1:
                    # The same call torch makes when the parametrization is registered.
                    p._power_method(p._reshape_weight_to_matrix(trainable_weight(layer)), iterations)


def spectral_norm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if has_spectral_norm(m)]
