"""GAN losses (``loss.name``), all computed on the discriminator's logits.

Working on logits (``binary_cross_entropy_with_logits`` rather than ``BCELoss`` after a Sigmoid) is the
numerically stable form of the same loss, and the one that stays correct under mixed precision.
Each loss is a small object with ``d_loss`` and ``g_loss``; the training step calls them and nothing
else, so adding a loss is one class plus one registry entry.

=========  ===============================================  ==============================================
name       discriminator minimises                           generator minimises
=========  ===============================================  ==============================================
bce        BCE(D(x), 1) + BCE(D(G(z)), 0)                    BCE(D(G(z)), 1)  (non-saturating, the tutorial)
minimax    same as bce                                       log(1 - sigmoid(D(G(z))))  (the original game)
hinge      relu(1 - D(x)) + relu(1 + D(G(z)))                -D(G(z))
wgan-gp    D(G(z)) - D(x)  (+ gradient penalty, see penalties)  -D(G(z))
lsgan      (D(x) - 1)^2 / 2 + (D(G(z)) - 0)^2 / 2            (D(G(z)) - 1)^2 / 2
ragan      BCE(D(x) - mean D(G(z)), 1)                       BCE(D(G(z)) - mean D(x), 1)
           + BCE(D(G(z)) - mean D(x), 0)                     + BCE(D(x) - mean D(G(z)), 0)
rpgan      softplus(-(D(x) - D(G(z))))  (pairs; + R1, R2)    softplus(-(D(G(z)) - D(x)))
=========  ===============================================  ==============================================

The 1 and 0 above are the targets from :class:`~ganforge.training.strategies.Targets` (``loss.real_label``,
``loss.fake_label``, label flipping) for the losses that have targets; hinge and wgan-gp have none.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.config import Config, ConfigError


class Loss:
    #: True when g_loss needs D's logits on real images (relativistic losses).
    needs_real_logits_for_g = False
    #: True when D's output is a logit of "real" (BCE-type losses): D(x) readings are probabilities.
    probabilistic = True
    #: True when d_loss uses the real/fake targets (label smoothing and flipping act on it).
    uses_targets = True

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor,
               real_target: torch.Tensor, fake_target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def reading(self, logits: torch.Tensor) -> torch.Tensor:
        """What the log shows as D(x) and D(G(z)): a probability for BCE-type losses, the raw score else."""
        return torch.sigmoid(logits) if self.probabilistic else logits

    def d_wins(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """1.0 when D separates this batch completely (the divergence guard counts these), else 0.0.

        Completely means with near certainty: mean D(x) > 0.99 and mean D(G(z)) < 0.01 as probabilities
        (logits beyond +-4.6); G then gets almost no useful gradient from the BCE-type losses.
        """
        margin = 4.595  # logit(0.99)
        return ((real_logits.mean() > margin) & (fake_logits.mean() < -margin)).float()


class BCELoss(Loss):
    """The tutorial's: D maximises log D(x) + log(1 - D(G(z))); G maximises log D(G(z)) (non-saturating)."""

    def d_loss(self, real_logits, fake_logits, real_target, fake_target):
        return (F.binary_cross_entropy_with_logits(real_logits, real_target)
                + F.binary_cross_entropy_with_logits(fake_logits, fake_target))

    def g_loss(self, fake_logits, real_logits=None):
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


class MinimaxLoss(BCELoss):
    """The original game (Goodfellow et al. 2014): G minimises log(1 - D(G(z))).

    It saturates: when D rejects the fakes confidently, G's gradient vanishes.  Kept for teaching and
    comparison; ``bce`` is the same game with the generator's loss that does not saturate.
    """

    def g_loss(self, fake_logits, real_logits=None):
        # log(1 - sigmoid(l)) = -softplus(l) = -BCE(l, 0)
        return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


class HingeLoss(Loss):
    """Hinge loss (Geometric GAN; SAGAN, BigGAN): D stops pushing once a sample is beyond the margin 1."""
    probabilistic = False
    uses_targets = False

    def d_loss(self, real_logits, fake_logits, real_target=None, fake_target=None):
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()

    def d_wins(self, real_logits, fake_logits):
        # Every sample beyond its margin: D's hinge loss is exactly zero and D learns nothing more.
        return ((real_logits.min() >= 1.0) & (fake_logits.max() <= -1.0)).float()


class WassersteinLoss(Loss):
    """WGAN (Arjovsky et al. 2017) with the gradient penalty of Gulrajani et al. 2017 (``loss.gp_weight``).

    D is a critic with an unbounded score; the penalty (added by
    :class:`~ganforge.training.penalties.GradientPenalty`) keeps it 1-Lipschitz.  Usually paired with
    ``train.d_steps=5``, Adam betas (0.0, 0.9) and no BatchNorm in D (``model.d_batchnorm=false``).
    """
    probabilistic = False
    uses_targets = False

    def d_loss(self, real_logits, fake_logits, real_target=None, fake_target=None):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()


class LeastSquaresLoss(Loss):
    """LSGAN (Mao et al. 2017): D regresses reals to the real target and fakes to the fake target."""
    probabilistic = False

    def d_loss(self, real_logits, fake_logits, real_target, fake_target):
        return 0.5 * ((real_logits - real_target) ** 2).mean() + 0.5 * ((fake_logits - fake_target) ** 2).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return 0.5 * ((fake_logits - 1.0) ** 2).mean()

    def d_wins(self, real_logits, fake_logits):
        return ((real_logits.mean() > 0.99) & (fake_logits.mean() < 0.01)).float()


class RelativisticAverageLoss(Loss):
    """RaGAN (Jolicoeur-Martineau 2018): D judges whether a real image is more realistic than the
    average fake (and the reverse); G gets gradient from both the fakes and the reals."""
    needs_real_logits_for_g = True

    def d_loss(self, real_logits, fake_logits, real_target, fake_target):
        return (F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), real_target)
                + F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), fake_target))

    def g_loss(self, fake_logits, real_logits=None):
        if real_logits is None:
            raise ValueError("ragan's generator loss needs D's logits on real images")
        return (F.binary_cross_entropy_with_logits(fake_logits - real_logits.mean(), torch.ones_like(fake_logits))
                + F.binary_cross_entropy_with_logits(real_logits - fake_logits.mean(), torch.zeros_like(real_logits)))


class RelativisticPairingLoss(Loss):
    """RpGAN (Jolicoeur-Martineau 2019) as R3GAN uses it (Huang et al. 2024): each real image is paired
    with a fake one and D is asked which of the two is the real one, ``softplus(-(D(x) - D(G(z))))``; G
    asks the reverse.  The loss sees only differences, so D's outputs cannot all drift to one side, and
    with the zero-centred penalties R1 and R2 (``loss.r1_gamma``, ``loss.r2_gamma``) the game converges
    locally, where the plain losses need many other tricks."""
    needs_real_logits_for_g = True
    probabilistic = False
    uses_targets = False

    def d_loss(self, real_logits, fake_logits, real_target=None, fake_target=None):
        return F.softplus(fake_logits - real_logits).mean()

    def g_loss(self, fake_logits, real_logits=None):
        if real_logits is None:
            raise ValueError("rpgan's generator loss needs D's logits on real images")
        return F.softplus(real_logits - fake_logits).mean()

    def d_wins(self, real_logits, fake_logits):
        # Every pair ordered with near certainty (a difference beyond logit(0.99)).
        return ((real_logits - fake_logits).min() > 4.595).float()


LOSSES: dict[str, type[Loss]] = {
    "bce": BCELoss,
    "minimax": MinimaxLoss,
    "hinge": HingeLoss,
    "wgan-gp": WassersteinLoss,
    "lsgan": LeastSquaresLoss,
    "ragan": RelativisticAverageLoss,
    "rpgan": RelativisticPairingLoss,
}


def build_loss(cfg: Config) -> Loss:
    try:
        loss = LOSSES[cfg.loss.name]()
    except KeyError:
        raise ConfigError(f"loss.name '{cfg.loss.name}' is not implemented; available: {', '.join(LOSSES)}") from None
    l = cfg.loss
    if not loss.uses_targets and (l.real_label != 1.0 or l.fake_label != 0.0 or l.label_flip > 0):
        raise ConfigError(f"loss.name={l.name} has no real/fake targets, so loss.real_label, loss.fake_label and "
                          "loss.label_flip do nothing with it: leave them at 1.0, 0.0 and 0, or use loss.name=bce, "
                          "lsgan or ragan for label smoothing")
    if l.name == "wgan-gp" and l.gp_weight <= 0:
        raise ConfigError("loss.name=wgan-gp needs its gradient penalty: set loss.gp_weight > 0 (10 is the paper's)")
    return loss
