"""Architectures, chosen by name (``model.name``).

Each architecture lives in its own module with a ``build`` function, listed by name in
:data:`REGISTRY` below (a plain table: nothing registers itself at import time); adding one is one new
file plus one line there.  A builder takes the resolved :class:`~ganforge.config.Config` and returns
``(generator, discriminator)``.

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
from ganforge.nets import dcgan, dcgan_upsample, fastgan, mlp, projected, resnet
from ganforge.storage import CheckpointError

Builder = Callable[[Config], "tuple[nn.Module, nn.Module]"]
#: ``model.name`` -> the builder of that architecture.
REGISTRY: dict[str, Builder] = {
    "dcgan": dcgan.build,
    "dcgan-upsample": dcgan_upsample.build,
    "fastgan": fastgan.build,
    "mlp": mlp.build,
    "resnet": resnet.build,
}


def register(name: str) -> Callable[[Builder], Builder]:
    """Add an architecture from outside this package (a plugin, a test): ``@nets.register("mine")``."""
    def deco(fn: Builder) -> Builder:
        REGISTRY[name] = fn
        return fn
    return deco


#: ``model.name`` -> what its builder would refuse, checked without building (see :func:`check`).
CHECKS: dict[str, Callable[[Config], None]] = {"resnet": resnet.check}


def check(cfg: Config) -> None:
    """Every check :func:`build` makes, without building the networks (seconds for large models): the
    run's preflight calls this before the run directory exists."""
    if cfg.model.name not in REGISTRY:
        raise ConfigError(f"unknown model.name '{cfg.model.name}'; known: {', '.join(sorted(REGISTRY))}")
    CHECKS.get(cfg.model.name, lambda cfg: None)(cfg)
    if cfg.model.discriminator == "projected":
        projected.check(cfg)


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    """The family's G and D; with ``model.discriminator=projected`` the family's D gives way to the projected
    one (:mod:`ganforge.nets.projected`), which judges any family's images."""
    check(cfg)
    G, D = REGISTRY[cfg.model.name](cfg)
    if cfg.model.discriminator == "projected":
        D = projected.build_discriminator(cfg)
    return G, D


#: Model keys that change the layers (and so the state dict); the others (init, upsample) do not.
_ARCHITECTURE_KEYS = ("nz", "ngf", "ndf", "g_hidden", "d_hidden", "spectral_norm", "spectral_norm_g",
                      "d_batchnorm", "attention", "num_classes", "hierarchical_z", "latent_groups")


def architecture_id(cfg: Config) -> dict:
    """What must match for a state dict to load into a model: stored with every checkpoint."""
    m = cfg.model
    arch = {"model": m.name, "image_size": cfg.data.image_size, "channels": cfg.data.channels}
    arch.update({k: getattr(m, k) for k in _ARCHITECTURE_KEYS})
    if m.name == "fastgan":  # its decoders are layers of D; other families have none
        arch["fastgan_decoder"] = m.fastgan_decoder
    arch["discriminator"] = m.discriminator  # files from before it existed have the family's own D
    if m.discriminator == "projected":
        arch.update(projected_size=m.projected_size, projected_pixels=m.projected_pixels)
    return arch


def check_architecture(saved: dict | None, cfg: Config, source: str = "the checkpoint") -> None:
    """Refuse weights saved for another architecture, naming what differs and what to do.

    Keys missing on either side (files from older versions) are not compared."""
    if not saved:
        return
    current = architecture_id(cfg)
    saved = {"discriminator": "own", **saved}  # the only D there was before the key was recorded
    differs = {k: (saved[k], current[k]) for k in saved.keys() & current.keys() if saved[k] != current[k]}
    if differs:
        lines = "\n".join(f"  {k}: saved {a!r}, now {b!r}" for k, (a, b) in sorted(differs.items()))
        raise CheckpointError(
            f"{source} holds weights for a different architecture than the config builds:\n{lines}\n"
            "Use the config the weights were saved with (config.yaml of their run), or start a new run.")

