"""Fixtures for the tests marked ``cuda`` (they run on a CUDA device and skip cleanly without one).

A GPU machine without a package registry has no ``dataset-fashion-mnist``: ``bash scripts/gpu_check.sh
--prepare`` carries a subset of it in ``.gpu_carry/data/``, which tests/conftest.py reads when the Debian files
are missing.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

# Deterministic cuBLAS for the tests that compare runs bit for bit (read when cuBLAS starts, so set early).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@pytest.fixture
def real_batches(fashion_images):
    """``real_batches(k)``: k different real batches of 16 images (3 x 32 x 32 in [-1, 1]) with their labels."""
    def make(k: int = 1):
        out = []
        for i in range(k):
            x = torch.from_numpy(fashion_images[16 * i:16 * (i + 1)]).float().div(127.5).sub(1.0).unsqueeze(1)
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
            out.append((x.contiguous(), torch.zeros(16, dtype=torch.long)))
        return out
    return make


@pytest.fixture
def cuda_tiny(tiny):
    """``tiny`` (tests/conftest.py) on the GPU, uncompiled unless asked."""
    def make(source, *overrides):
        return tiny(source, "train.device=cuda", "train.compile=off", *overrides)
    return make


@pytest.fixture
def strict_fp32():
    """Call it after ``speed.accelerate`` (which allows TF32) to compare fp32 runs without TF32 rounding;
    the flags come back afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32

    def off():
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    yield off
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
