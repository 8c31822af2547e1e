"""Weight initialisation schemes (``model.init``).

Initialisers write :func:`~ganforge.modules.spectral.trainable_weight`: for a spectral-norm layer that
is ``layer.parametrizations.weight.original`` (writing ``layer.weight`` there changes nothing that is
trained), and the power-iteration vectors are refreshed afterwards so the normalisation matches the
new weights from the first step.
"""
from __future__ import annotations

import torch
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


def dcgan_icnr_init(m: nn.Module) -> None:
    """DCGAN's, but each stride-2 transposed convolution starts free of checkerboard patterns.

    A 4x4 stride-2 transposed conv computes each of the four output phases with a different 2x2 subset
    of its kernel, so random weights give the phases different gains and paint a checkerboard that
    training then has to undo (Odena et al. 2016).  Drawing a 2x2 kernel and repeating each tap 2x2
    (the idea of Aitken et al. 2017's ICNR for sub-pixel convolution) gives every phase the same taps:
    flat input stays flat.  Same layers, same cost; only the starting point differs.
    """
    dcgan_init(m)
    if isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2) and m.kernel_size == (4, 4):
        w = trainable_weight(m)
        small = torch.empty(*w.shape[:2], 2, 2, dtype=w.dtype, device=w.device).normal_(0.0, 0.02)
        with torch.no_grad():
            w.copy_(small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


def orthogonal_init(m: nn.Module) -> None:
    """BigGAN's: orthogonal weights for convolutions, linear layers and embeddings."""
    if isinstance(m, _WEIGHTED + (nn.Embedding,)):
        nn.init.orthogonal_(trainable_weight(m))
        _zero_bias(m)


def xavier_init(m: nn.Module) -> None:
    if isinstance(m, _WEIGHTED):
        nn.init.xavier_uniform_(trainable_weight(m))
        _zero_bias(m)


INITS = {"dcgan": dcgan_init, "dcgan-icnr": dcgan_icnr_init, "orthogonal": orthogonal_init, "xavier": xavier_init}


def initialise(module: nn.Module, scheme: str) -> None:
    """Apply ``scheme`` to every layer; 'default' keeps PyTorch's own initialisation."""
    if scheme != "default":
        module.apply(INITS[scheme])
        refresh_spectral_norm(module)
