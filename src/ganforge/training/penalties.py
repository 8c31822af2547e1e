"""Gradient penalties added to the discriminator's loss.

- :class:`R1Penalty` (``loss.r1_gamma``, Mescheder et al. 2018): ``gamma / 2 * E ||grad_x D(x)||^2`` on
  real images.  It keeps D flat around the data, which makes training converge where plain GANs
  oscillate.  With ``loss.r1_every = k`` it is computed on every k-th discriminator step only and
  multiplied by k (StyleGAN2's lazy regularisation): nearly the same effect, a fraction of the cost.
- :class:`GradientPenalty` (``loss.gp_weight``, on with ``loss.name=wgan-gp``, Gulrajani et al. 2017):
  ``weight * E (||grad D(x_hat)|| - 1)^2`` at random points ``x_hat`` between a real and a fake image,
  which keeps the Wasserstein critic 1-Lipschitz.

Both take D's *inputs* as the step built them (after instance noise and augmentation), so they act on
what D actually sees, and both differentiate through the gradient (``create_graph=True``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ganforge.training.strategies import Penalty


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    # Under mixed precision squared gradients under- and overflow in half precision.
    return t.to(torch.promote_types(t.dtype, torch.float32))


def input_gradient(D: nn.Module, x: torch.Tensor, labels) -> torch.Tensor:
    """d(sum of D's logits)/dx, kept differentiable so a penalty on it can be minimised."""
    # torch.compile'd modules cannot be differentiated twice (create_graph): use the module inside.
    D = getattr(D, "_orig_mod", D)
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

    def __call__(self, D, real, fake, labels, step):
        """``step``: the number of discriminator steps before this one (lazy: every ``every``-th)."""
        if step % self.every:
            return None
        return self.every * self.penalty(D, real, labels)


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

    def __call__(self, D, real, fake, labels, step):
        return self.penalty(D, self.interpolate(real, fake), labels)
