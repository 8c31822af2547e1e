"""Gradient penalties added to the discriminator's loss.

- :class:`R1Penalty` (``loss.r1_gamma``, Mescheder et al. 2018): ``gamma / 2 * E ||grad_x D(x)||^2`` on
  real images.  It keeps D flat around the data, which makes training converge where plain GANs
  oscillate.  With ``loss.r1_every = k`` it is computed on every k-th discriminator step only and
  multiplied by k (StyleGAN2's lazy regularisation): nearly the same effect, a fraction of the cost.
- :class:`R2Penalty` (``loss.r2_gamma``): the same on generated images.  R3GAN (Huang et al. 2024) shows
  that R1 and R2 together make the relativistic pairing loss (``loss.name=rpgan``) converge locally,
  and that the pair removes the need for most other tricks.  ``loss.r1_every`` makes both lazy.
- :class:`GradientPenalty` (``loss.gp_weight``, on with ``loss.name=wgan-gp``, Gulrajani et al. 2017):
  ``weight * E (||grad D(x_hat)|| - 1)^2`` at random points ``x_hat`` between a real and a fake image,
  which keeps the Wasserstein critic 1-Lipschitz.

- :class:`LeCamPenalty` (``loss.lecam``, Tseng et al. 2021): ``E (D(x) - a_fake)^2 + E (D(G(z)) - a_real)^2``
  with ``a_real``, ``a_fake`` moving averages (0.99) of D's outputs.  It keeps D's outputs on reals and
  fakes from drifting apart, which is what a D trained on few images does; it costs nothing.
- :class:`ReconstructionLoss` (``loss.recon``, FastGAN's self-supervision): D's decoders rebuild the
  real image and a quarter of it from its features; the L1 or MSE error is added to D's loss.

The gradient penalties take D's *inputs* as the step built them (after instance noise and augmentation), so they act on
what D actually sees, and both differentiate through the gradient (``create_graph=True``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ganforge.training.speed import eager_module
from ganforge.training.strategies import Penalty


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    # Under mixed precision squared gradients under- and overflow in half precision.
    return t.to(torch.promote_types(t.dtype, torch.float32))


def input_gradient(D: nn.Module, x: torch.Tensor, labels) -> torch.Tensor:
    """d(sum of D's logits)/dx, kept differentiable so a penalty on it can be minimised."""
    # torch.compile'd modules cannot be differentiated twice (create_graph): use the module inside.
    D = eager_module(D)
    x = x.detach().requires_grad_(True)
    logits = _at_least_fp32(D(x, labels))
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return _at_least_fp32(grad)


class R1Penalty(Penalty):
    def __init__(self, gamma: float, every: int = 1):
        self.gamma, self.every = gamma, every

    def penalty(self, D: nn.Module, real: torch.Tensor, labels=None) -> torch.Tensor:
        grad = input_gradient(D, real, labels)
        return self.gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()

    def __call__(self, D, real, fake, labels, step, real_logits=None, fake_logits=None):
        """``step``: the number of discriminator steps before this one (lazy: every ``every``-th)."""
        if step % self.every:
            return None
        return self.every * self.penalty(D, real, labels.real)


class R2Penalty(R1Penalty):
    """R1's zero-centred gradient penalty, on D's fake inputs."""

    def __call__(self, D, real, fake, labels, step, real_logits=None, fake_logits=None):
        if step % self.every:
            return None
        return self.every * self.penalty(D, fake.detach(), labels.fake)


class GradientPenalty(Penalty):
    def __init__(self, weight: float):
        self.weight = weight

    @staticmethod
    def interpolate(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
        return eps * real.detach() + (1 - eps) * fake.detach()

    def penalty(self, D: nn.Module, x_hat: torch.Tensor, labels=None) -> torch.Tensor:
        grad = input_gradient(D, x_hat, labels).flatten(1)
        # The small constant keeps the norm's own gradient finite where grad is exactly zero.
        norm = torch.sqrt(grad.pow(2).sum(1) + 1e-12)
        return self.weight * ((norm - 1.0) ** 2).mean()

    def __call__(self, D, real, fake, labels, step, real_logits=None, fake_logits=None):
        # A mixture of a real and a fake image is judged under the real one's label: with class
        # conditioning the two are the same (the config refuses this penalty where they differ).
        return self.penalty(D, self.interpolate(real, fake), labels.real)


class LeCamPenalty(Penalty):
    DECAY = 0.99  # the paper's

    def __init__(self, weight: float):
        self.weight = weight
        self.real_avg: torch.Tensor | None = None  # moving averages of D's mean output, on the device
        self.fake_avg: torch.Tensor | None = None

    def _update(self, avg: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
        value = value.detach().float().mean()
        return value if avg is None else torch.lerp(value, avg.to(value.device), self.DECAY)

    def __call__(self, D, real, fake, labels, step, real_logits=None, fake_logits=None):
        self.real_avg = self._update(self.real_avg, real_logits)
        self.fake_avg = self._update(self.fake_avg, fake_logits)
        return self.weight * ((real_logits - self.fake_avg).pow(2).mean() + (fake_logits - self.real_avg).pow(2).mean())

    def state_dict(self) -> dict:
        if self.real_avg is None:
            return {}
        return {"real_avg": self.real_avg.detach().cpu(), "fake_avg": self.fake_avg.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        if "real_avg" in state:
            self.real_avg, self.fake_avg = state["real_avg"].clone(), state["fake_avg"].clone()


class ReconstructionLoss(Penalty):
    """FastGAN's self-supervision: D (a :class:`~ganforge.nets.fastgan.FastGANDiscriminator`) rebuilds the
    real batch from its 8x8 features and one random quarter of it from the 16x16 features."""

    def __init__(self, kind: str, weight: float):
        self.distance = torch.nn.functional.l1_loss if kind == "l1" else torch.nn.functional.mse_loss
        self.weight = weight

    def __call__(self, D, real, fake, labels, step, real_logits=None, fake_logits=None):
        D = eager_module(D)  # the decoders are D's own, outside DDP, torch.compile and CUDA graphs
        quarter = int(torch.randint(0, 4, ()))
        whole, whole_target, part, part_target = D.reconstruct(real, quarter)
        return self.weight * (self.distance(whole.float(), whole_target.float())
                              + self.distance(part.float(), part_target.float()))
