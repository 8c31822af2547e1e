"""Every architecture at every supported resolution and channel count: output shapes and ranges."""
from __future__ import annotations

import pytest
import torch

from ganforge import nets
from .zoo import SIZES, net_config

CASES = [(name, size, ch) for name, sizes in SIZES.items() for size in sizes for ch in (1, 3)]


@pytest.mark.parametrize("name,size,channels", CASES, ids=[f"{n}-{s}px-{c}ch" for n, s, c in CASES])
def test_generator_and_discriminator_shapes(name, size, channels):
    torch.manual_seed(0)
    G, D = nets.build(net_config(name, "model.init=default", size=size, channels=channels))
    images = G(torch.randn(2, 16))
    assert images.shape == (2, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # Tanh out
    logits = D(images)
    assert logits.shape == (2,)  # one logit per image, no Sigmoid
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["dcgan", "resnet"])
def test_each_resolution_adds_one_stage(name):
    """One more up/down stage per doubling: the layer count grows by the same step from 32 to 256."""
    counts = []
    for size in (32, 64, 128, 256):
        G, D = nets.build(net_config(name, "model.init=default", size=size))
        counts.append(sum(1 for m in G.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))))
    steps = {b - a for a, b in zip(counts, counts[1:])}
    assert len(steps) == 1 and steps.pop() > 0
