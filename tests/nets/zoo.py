"""Helpers for the model-zoo tests: tiny configs for any architecture, and real image batches."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ganforge import config as C

#: Every architecture with the image sizes it supports.
SIZES = {"dcgan": (32, 64, 128, 256), "dcgan-upsample": (32, 64, 128, 256), "mlp": (28, 32),
         "resnet": (32, 64, 128, 256), "fastgan": (32, 64, 128, 256)}
ARCHITECTURES = tuple(SIZES)


def net_config(name: str, *overrides: str, size: int = 32, channels: int = 3) -> C.Config:
    """Narrow networks (width 8, z of 16, small MLP layers) so that a forward pass takes milliseconds."""
    return C.load(overrides=[
        f"model.name={name}", f"data.image_size={size}", f"data.channels={channels}", "model.nz=16",
        "model.ngf=8", "model.ndf=8", "model.g_hidden=[32,64]", "model.d_hidden=[64,32]", "data.batch_size=16",
        "train.device=cpu", *overrides])


def real_batch(images: np.ndarray, n: int, size: int, channels: int) -> torch.Tensor:
    """``n`` Fashion-MNIST images as a training batch: resized to ``size``, in [-1, 1], 1 or 3 channels."""
    x = torch.from_numpy(images[:n]).float().div(127.5).sub(1).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return x.repeat(1, channels, 1, 1)


#: The BigGAN-style options each architecture supports, all switched on.
ALL_OPTIONS = {
    "dcgan": ["model.spectral_norm=true", "model.spectral_norm_g=true", "model.d_batchnorm=false",
              "model.attention=16", "model.num_classes=3", "data.labels=true"],
    "dcgan-upsample": ["model.spectral_norm=true", "model.spectral_norm_g=true", "model.d_batchnorm=false",
                       "model.attention=16", "model.num_classes=3", "data.labels=true", "model.upsample=bilinear"],
    "mlp": ["model.spectral_norm=true", "model.spectral_norm_g=true", "model.num_classes=3", "data.labels=true"],
    "resnet": ["model.spectral_norm=true", "model.spectral_norm_g=true", "model.attention=16",
               "model.num_classes=3", "data.labels=true", "model.hierarchical_z=true", "model.init=orthogonal"],
    "fastgan": ["model.spectral_norm=true", "model.spectral_norm_g=true", "model.num_classes=3", "data.labels=true"],
}


def first_layer(net: torch.nn.Module) -> torch.nn.Module:
    """The first weighted layer an input goes through (every zoo network registers it first)."""
    return next(m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)))


def size_for(name: str) -> int:
    return 28 if name == "mlp" else 32
