"""GAN losses, all computed on the discriminator's logits.

Working on logits (``binary_cross_entropy_with_logits`` rather than ``BCELoss`` after a Sigmoid) is the
numerically stable form of the same loss, and the one that stays correct under mixed precision.
Each loss is a small object with ``d_loss`` and ``g_loss``; the training step calls them and nothing
else, so adding a loss is one class plus one registry entry.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.config import Config, ConfigError


class Loss:
    #: True when g_loss needs D's logits on real images (relativistic losses).
    needs_real_logits_for_g = False
    #: True when the discriminator's output is a probability logit (D(x) readings make sense).
    probabilistic = True

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor,
               real_target: torch.Tensor, fake_target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class BCELoss(Loss):
    """The tutorial's: D maximises log D(x) + log(1 - D(G(z))); G maximises log D(G(z)) (non-saturating)."""

    def d_loss(self, real_logits, fake_logits, real_target, fake_target):
        return (F.binary_cross_entropy_with_logits(real_logits, real_target)
                + F.binary_cross_entropy_with_logits(fake_logits, fake_target))

    def g_loss(self, fake_logits, real_logits=None):
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


LOSSES: dict[str, type[Loss]] = {"bce": BCELoss}


def build_loss(cfg: Config) -> Loss:
    try:
        return LOSSES[cfg.loss.name]()
    except KeyError:
        raise ConfigError(f"loss.name '{cfg.loss.name}' is not implemented; available: {', '.join(LOSSES)}") from None
