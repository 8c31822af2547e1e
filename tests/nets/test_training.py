"""Gradients reach every network's first layer, and D learns to tell a fixed real batch from fakes."""
from __future__ import annotations

import pytest
import torch

from ganforge import nets
from ganforge.modules import trainable_weight
from ganforge.training.losses import build_loss
from ganforge.training.optim import build_optimizer
from ganforge.training.strategies import build_targets
from .zoo import ALL_OPTIONS, ARCHITECTURES, first_layer, net_config, size_for

VARIANTS = [(name, opts) for name in ARCHITECTURES for opts in ("plain", "all-options")]


def _build(name: str, opts: str, *extra: str, channels: int = 3):
    overrides = ALL_OPTIONS[name] if opts == "all-options" else []
    cfg = net_config(name, *overrides, *extra, size=size_for(name), channels=channels)
    return cfg, *nets.build(cfg)


@pytest.mark.parametrize("name,opts", VARIANTS)
def test_gradient_reaches_first_layer_of_g_and_d(name, opts):
    torch.manual_seed(0)
    cfg, G, D = _build(name, opts)
    y = torch.arange(4) % 3 if cfg.model.num_classes else None
    D(G(torch.randn(4, cfg.model.nz), y), y).mean().backward()
    for net in (G, D):
        grad = trainable_weight(first_layer(net)).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name,opts", VARIANTS)
def test_few_steps_on_a_fixed_real_batch_lower_the_discriminator_loss(name, opts, real_images):
    torch.manual_seed(0)
    cfg, G, D = _build(name, opts, "optim.d.lr=0.001", channels=1)
    real = real_images(16, size_for(name), channels=1)  # real Fashion-MNIST clothes
    y = torch.arange(16) % 3 if cfg.model.num_classes else None
    with torch.no_grad():
        fake = G(torch.randn(16, cfg.model.nz), y)
    loss, targets, opt = build_loss(cfg), build_targets(cfg), build_optimizer(D, cfg.optim.d)
    real_target, fake_target = targets(16, real.device)
    losses = []
    for _ in range(10):
        loss_d = loss.d_loss(D(real, y), D(fake, y), real_target, fake_target)
        opt.zero_grad()
        loss_d.backward()
        opt.step()
        losses.append(loss_d.item())
    assert losses[-1] < 0.8 * losses[0], losses
