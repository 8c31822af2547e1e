"""The six GAN losses: their formulas on logits, their stability, and one real step with each."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganforge.config import ConfigError
from ganforge.training.losses import LOSSES, build_loss
from ganforge.training.trainer import Trainer

REAL = torch.tensor([2.0, -1.0, 0.5, 3.0])
FAKE = torch.tensor([-2.0, 0.3, -0.7, 1.5])
ONES, ZEROS = torch.ones(4), torch.zeros(4)


def logsig(x):
    return torch.log(torch.sigmoid(x))


def test_bce_is_the_tutorials_loss():
    loss = LOSSES["bce"]()
    d = loss.d_loss(REAL, FAKE, ONES, ZEROS)
    assert torch.allclose(d, -logsig(REAL).mean() - torch.log(1 - torch.sigmoid(FAKE)).mean())
    assert torch.allclose(loss.g_loss(FAKE), -logsig(FAKE).mean())


def test_minimax_generator_minimises_log_one_minus_d_and_saturates():
    loss = LOSSES["minimax"]()
    assert torch.allclose(loss.g_loss(FAKE), torch.log(1 - torch.sigmoid(FAKE)).mean())
    # When D rejects a fake confidently, the original game gives G almost no gradient; bce does not.
    confident = torch.tensor([-8.0], requires_grad=True)
    (g_minimax,) = torch.autograd.grad(loss.g_loss(confident), confident)
    (g_bce,) = torch.autograd.grad(LOSSES["bce"]().g_loss(confident), confident)
    assert abs(g_minimax.item()) < 1e-3 < 0.99 < abs(g_bce.item())


def test_hinge_and_wasserstein_formulas():
    hinge, wgan = LOSSES["hinge"](), LOSSES["wgan-gp"]()
    assert torch.allclose(hinge.d_loss(REAL, FAKE), F.relu(1 - REAL).mean() + F.relu(1 + FAKE).mean())
    assert torch.allclose(hinge.g_loss(FAKE), -FAKE.mean())
    assert torch.allclose(wgan.d_loss(REAL, FAKE), FAKE.mean() - REAL.mean())
    assert torch.allclose(wgan.g_loss(FAKE), -FAKE.mean())


def test_lsgan_regresses_to_the_targets():
    loss = LOSSES["lsgan"]()
    smooth = torch.full((4,), 0.9)
    assert torch.allclose(loss.d_loss(REAL, FAKE, smooth, ZEROS),
                          0.5 * ((REAL - 0.9) ** 2).mean() + 0.5 * (FAKE ** 2).mean())
    assert torch.allclose(loss.g_loss(FAKE), 0.5 * ((FAKE - 1) ** 2).mean())


def test_ragan_is_relative_to_the_other_batch():
    loss = LOSSES["ragan"]()
    d = loss.d_loss(REAL, FAKE, ONES, ZEROS)
    expected = -logsig(REAL - FAKE.mean()).mean() - torch.log(1 - torch.sigmoid(FAKE - REAL.mean())).mean()
    assert torch.allclose(d, expected, atol=1e-6)
    g = loss.g_loss(FAKE, REAL)
    expected_g = -logsig(FAKE - REAL.mean()).mean() - torch.log(1 - torch.sigmoid(REAL - FAKE.mean())).mean()
    assert torch.allclose(g, expected_g, atol=1e-6)
    assert loss.needs_real_logits_for_g


@pytest.mark.parametrize("name", ["bce", "minimax", "lsgan", "ragan"])
def test_losses_on_logits_stay_finite_where_a_sigmoid_would_overflow(name):
    loss = LOSSES[name]()
    huge = torch.tensor([60.0, -60.0], dtype=torch.float16).float()
    real, fake = huge.clone().requires_grad_(True), (-huge).clone().requires_grad_(True)
    d = loss.d_loss(real, fake, torch.ones(2), torch.zeros(2))
    d.backward()
    assert torch.isfinite(d) and torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()


def test_wgan_gp_needs_a_penalty(tiny, image_folder):
    with pytest.raises(ConfigError, match="gp_weight"):
        build_loss(tiny(image_folder, "loss.name=wgan-gp", "loss.gp_weight=0"))


@pytest.mark.parametrize("name, extra", [
    ("bce", []), ("minimax", []), ("hinge", ["model.spectral_norm=true", "model.d_batchnorm=false"]),
    ("wgan-gp", ["model.d_batchnorm=false"]), ("lsgan", []), ("ragan", []),
])
def test_each_loss_trains_a_real_step(tmp_path, image_folder, tiny, real_batches, name, extra):
    trainer = Trainer(tiny(image_folder, f"loss.name={name}", *extra), tmp_path, log_format="quiet")
    g_before = [p.detach().clone() for p in trainer.G.parameters()]
    d_before = [p.detach().clone() for p in trainer.D.parameters()]
    out = trainer.step_fn(real_batches(1), step=0)
    assert all(torch.isfinite(v).all() for v in out.values()), out
    assert any(not torch.equal(a, b) for a, b in zip(g_before, trainer.G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d_before, trainer.D.parameters()))
    assert out["grad_norm_d"] > 0 and out["grad_norm_g"] > 0
