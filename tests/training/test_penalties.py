"""R1 and the WGAN gradient penalty match a finite-difference check of D's input gradient."""
from __future__ import annotations

import torch

from ganforge.nets.dcgan import DCGANDiscriminator
from ganforge.training.penalties import GradientPenalty, R1Penalty
from ganforge.training.strategies import DLabels


def small_critic() -> DCGANDiscriminator:
    # No BatchNorm: each image's score depends on that image only, so per-image gradients are defined.
    torch.manual_seed(0)
    return DCGANDiscriminator(ndf=4, nc=1, image_size=32, batchnorm=False).double()


def finite_difference_gradient(D, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """dD(x)/dx of one image (1, C, H, W) by central differences, all coordinates in one batch."""
    n = x.numel()
    eye = torch.eye(n, dtype=x.dtype).view(n, *x.shape[1:])
    with torch.no_grad():
        plus, minus = D(x + h * eye), D(x - h * eye)
    return ((plus - minus) / (2 * h)).view_as(x)


def test_r1_matches_finite_differences(real_batches):
    D = small_critic()
    real = real_batches(1, channels=1)[0][0][:2].double()
    grads = torch.cat([finite_difference_gradient(D, real[i:i + 1]) for i in range(2)])
    expected = 10.0 / 2 * grads.pow(2).flatten(1).sum(1).mean()
    got = R1Penalty(gamma=10.0).penalty(D, real)
    assert torch.allclose(got, expected, rtol=1e-5), (got.item(), expected.item())


def test_gradient_penalty_matches_finite_differences(real_batches):
    D = small_critic()
    real = real_batches(1, channels=1)[0][0][:2].double()
    fake = torch.rand_like(real) * 2 - 1
    x_hat = GradientPenalty.interpolate(real, fake)
    grads = torch.cat([finite_difference_gradient(D, x_hat[i:i + 1]) for i in range(2)])
    expected = 10.0 * ((grads.flatten(1).norm(dim=1) - 1) ** 2).mean()
    got = GradientPenalty(weight=10.0).penalty(D, x_hat)
    assert torch.allclose(got, expected, rtol=1e-5), (got.item(), expected.item())


def test_gradient_penalty_points_lie_between_real_and_fake():
    real, fake = torch.zeros(64, 1, 4, 4), torch.ones(64, 1, 4, 4)
    x_hat = GradientPenalty.interpolate(real, fake)
    per_image = x_hat.flatten(1)
    assert torch.all(per_image.min(1).values == per_image.max(1).values)  # one mixing weight per image
    assert 0 <= per_image.min() and per_image.max() <= 1 and per_image[:, 0].std() > 0.1


def test_penalties_are_differentiable_with_respect_to_d(real_batches):
    D = small_critic()
    real = real_batches(1, channels=1)[0][0][:4].double()
    for penalty in (R1Penalty(1.0).penalty(D, real), GradientPenalty(1.0).penalty(D, real)):
        grads = torch.autograd.grad(penalty, list(D.parameters()))
        assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_lazy_r1_applies_every_k_steps_scaled_by_k(real_batches):
    D = small_critic()
    real = real_batches(1, channels=1)[0][0][:2].double()
    lazy = R1Penalty(gamma=1.0, every=4)
    full = R1Penalty(gamma=1.0).penalty(D, real)
    values = [lazy(D, real, None, DLabels(), step) for step in range(9)]
    assert [v is not None for v in values] == [True, False, False, False, True, False, False, False, True]
    assert torch.allclose(values[0], 4 * full)
