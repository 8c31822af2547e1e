"""Architectures, chosen by name (``model.name``).

Each architecture lives in its own module and registers a builder with :func:`register`; adding one is
one new file plus one import below.  A builder takes the resolved :class:`~ganforge.config.Config` and
returns ``(generator, discriminator)``.

Contract every pair follows (the training loop relies on it):

- ``G(z, y=None)`` takes latents of shape ``(B, model.nz)`` (and class indices ``y`` when
  ``model.num_classes > 0``) and returns images in [-1, 1] of shape ``(B, C, S, S)``.
- ``D(x, y=None)`` returns one *logit* per image, shape ``(B,)``.  Losses are computed on logits
  (numerically stable, safe under mixed precision).  Where the original model ends in a Sigmoid (the
  DCGAN tutorial), the Sigmoid is kept as ``D.output_activation`` for inference and listings, and
  ``D.probability(x)`` applies it.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ganforge.config import Config, ConfigError

Builder = Callable[[Config], "tuple[nn.Module, nn.Module]"]
REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        REGISTRY[name] = fn
        return fn
    return deco


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    try:
        builder = REGISTRY[cfg.model.name]
    except KeyError:
        raise ConfigError(f"unknown model.name '{cfg.model.name}'; known: {', '.join(sorted(REGISTRY))}") from None
    return builder(cfg)


def architecture_id(cfg: Config) -> dict:
    """What must match for a state dict to load into a model: stored with every checkpoint."""
    m = cfg.model
    return {"model": m.name, "nz": m.nz, "ngf": m.ngf, "ndf": m.ndf, "image_size": cfg.data.image_size,
            "channels": cfg.data.channels, "num_classes": m.num_classes}


from ganforge.nets import dcgan  # noqa: E402,F401  (registers itself)
