"""Weight initialisation schemes (``model.init``)."""
from __future__ import annotations

import torch.nn as nn


def dcgan_init(m: nn.Module) -> None:
    """The DCGAN paper's: conv weights N(0, 0.02); BatchNorm weights N(1, 0.02), bias 0."""
    classname = m.__class__.__name__
    if "Conv" in classname or classname == "Linear":
        nn.init.normal_(m.weight.data, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias.data)
    elif "BatchNorm" in classname and getattr(m, "weight", None) is not None:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.zeros_(m.bias.data)


def orthogonal_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.orthogonal_(m.weight.data)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias.data)


def xavier_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight.data)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias.data)


INITS = {"dcgan": dcgan_init, "orthogonal": orthogonal_init, "xavier": xavier_init}


def initialise(module: nn.Module, scheme: str) -> None:
    """Apply ``scheme`` to every layer; 'default' keeps PyTorch's own initialisation."""
    if scheme != "default":
        module.apply(INITS[scheme])
