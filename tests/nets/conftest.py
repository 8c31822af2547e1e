"""Fixtures for the model-zoo tests (helpers live in zoo.py)."""
from __future__ import annotations

import pytest
import torch

from .zoo import real_batch


@pytest.fixture(autouse=True)
def one_thread():
    """Networks this narrow run fastest on one thread; two threads contending on a busy machine are
    several times slower (measured 0.07 s vs 0.3-0.7 s per resnet forward pair on 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def real_images(fashion_images):
    return lambda n, size=32, channels=3: real_batch(fashion_images, n, size, channels)
