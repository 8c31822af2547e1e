"""Weight initialisation schemes (``model.init``).

Initialisers write :func:`~ganforge.modules.spectral.trainable_weight`: for a spectral-norm layer that
is ``layer.parametrizations.weight.original`` (writing ``layer.weight`` there changes nothing that is
trained), and the power-iteration vectors are refreshed afterwards so the normalisation matches the
new weights from the first step.
"""
from __future__ import annotations

import torch.nn as nn

from ganforge.modules.spectral import refresh_spectral_norm, trainable_weight

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _zero_bias(m: nn.Module) -> None:
    if getattr(m, "bias", None) is not None and isinstance(m.bias, nn.Parameter):
        nn.init.zeros_(m.bias)


def dcgan_init(m: nn.Module) -> None:
    """The DCGAN paper's: conv and linear weights N(0, 0.02); BatchNorm weights N(1, 0.02), bias 0."""
    if isinstance(m, _WEIGHTED):
        nn.init.normal_(trainable_weight(m), 0.0, 0.02)
        _zero_bias(m)
    elif isinstance(m, _NORMS) and m.affine:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def orthogonal_init(m: nn.Module) -> None:
    """BigGAN's: orthogonal weights for convolutions, linear layers and embeddings."""
    if isinstance(m, _WEIGHTED + (nn.Embedding,)):
        nn.init.orthogonal_(trainable_weight(m))
        _zero_bias(m)


def xavier_init(m: nn.Module) -> None:
    if isinstance(m, _WEIGHTED):
        nn.init.xavier_uniform_(trainable_weight(m))
        _zero_bias(m)


INITS = {"dcgan": dcgan_init, "orthogonal": orthogonal_init, "xavier": xavier_init}


def initialise(module: nn.Module, scheme: str) -> None:
    """Apply ``scheme`` to every layer; 'default' keeps PyTorch's own initialisation."""
    if scheme != "default":
        module.apply(INITS[scheme])
        refresh_spectral_norm(module)
