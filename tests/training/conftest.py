"""Fixtures for the training-strategy tests: real Fashion-MNIST images as ready batches, and trainers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F


def as_batch(images: np.ndarray, channels: int = 3, size: int = 32) -> torch.Tensor:
    """Real uint8 images (N, 28, 28) as a training batch: float in [-1, 1], (N, channels, size, size)."""
    x = torch.from_numpy(images).float().div(127.5).sub(1.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.repeat(1, channels, 1, 1).contiguous()


@pytest.fixture
def real_batches(fashion_images):
    """``real_batches(k)``: k different real batches of 16 images, as (images, labels) pairs."""
    def make(k: int = 1, channels: int = 3, offset: int = 0):
        out = []
        for i in range(k):
            start = offset + 16 * i
            out.append((as_batch(fashion_images[start:start + 16], channels), torch.zeros(16, dtype=torch.long)))
        return out
    return make
