"""DCGAN (Radford et al. 2015) as the PyTorch tutorial builds it, at any power-of-two resolution.

At 64x64 with ngf = ndf = 64, nz = 100 and 3 channels the layers are exactly the tutorial's:
G 3,576,704 parameters, D 2,765,568.  Each doubling of the resolution adds one stride-2 stage to both
networks; the widths of the stages are ``ngf * 2**k`` so the last hidden stage always has ``ngf``
channels.

BigGAN-style options, all off by default (and then the layers and state-dict keys are the tutorial's):
spectral norm in D (``model.spectral_norm``) and G (``model.spectral_norm_g``), a self-attention block
at one resolution (``model.attention``), and class conditioning (``model.num_classes``: conditional
BatchNorm in G from a shared class embedding, a projection term in D on its last 4x4 features).

How G doubles the resolution is one function, the *upsampling stage*: a stride-2 transposed conv here;
``dcgan-upsample`` (``nets/dcgan_upsample.py``) passes upsampling followed by a conv instead.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn

from ganforge.config import Config
from ganforge.modules import ClassProjection, CondSequential, SelfAttention, batchnorm, maybe_spectral_norm
from ganforge.modules.conditional import SHARED_EMBEDDING_DIM
from ganforge.modules.latent_groups import label_or_group
from ganforge.nets.init import initialise

#: ``stage(in_channels, out_channels, spectral_norm) -> module`` doubling the spatial size.
UpsamplingStage = Callable[[int, int, bool], nn.Module]


def _stages(image_size: int) -> int:
    """Number of stride-2 stages after the 4x4 start: 3 at 32, 4 at 64, ... 6 at 256."""
    return int(math.log2(image_size)) - 2


def transposed_conv_stage(in_ch: int, out_ch: int, spectral_norm: bool = False) -> nn.Module:
    """The tutorial's: a 4x4 transposed convolution with stride 2."""
    return maybe_spectral_norm(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False), spectral_norm)


class DCGANGenerator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64, *,
                 upsampling_stage: UpsamplingStage = transposed_conv_stage, num_classes: int = 0,
                 attention: int = 0, spectral_norm: bool = False, latent_groups: int = 0):
        super().__init__()
        self.nz, self.latent_groups = nz, latent_groups
        n = _stages(image_size)
        cond_dim = SHARED_EMBEDDING_DIM if num_classes or latent_groups else 0
        width, resolution = ngf * 2 ** (n - 1), 4
        layers: list[nn.Module] = [
            # z, going into a convolution: (nz, 1, 1) -> (ngf * 2**(n-1), 4, 4)
            maybe_spectral_norm(nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False), spectral_norm),
            batchnorm(width, cond_dim, spectral_norm),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [upsampling_stage(width, width // 2, spectral_norm),
                       batchnorm(width // 2, cond_dim, spectral_norm),
                       nn.ReLU(True)]
            width, resolution = width // 2, resolution * 2
            if resolution == attention:
                layers.append(SelfAttention(width, spectral_norm))
        layers += [upsampling_stage(width, nc, spectral_norm), nn.Tanh()]
        self.main = CondSequential(*layers)
        # One class (or latent group) embedding shared by every conditional BatchNorm (BigGAN's "shared
        # embedding").
        self.shared = nn.Embedding(num_classes or latent_groups, cond_dim) if cond_dim else None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = label_or_group(z, y, self.latent_groups)
        cond = self.shared(y) if self.shared is not None else None
        return self.main(z.view(z.shape[0], self.nz, 1, 1), cond)


class DCGANDiscriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 3, image_size: int = 64, batchnorm: bool = True,
                 spectral_norm: bool = False, *, num_classes: int = 0, attention: int = 0):
        super().__init__()
        n = _stages(image_size)
        sn = lambda m: maybe_spectral_norm(m, spectral_norm)  # noqa: E731
        layers: list[nn.Module] = [sn(nn.Conv2d(nc, ndf, 4, 2, 1, bias=False)), nn.LeakyReLU(0.2, inplace=True)]
        width, resolution = ndf, image_size // 2
        for _ in range(n - 1):
            if resolution == attention:
                layers.append(SelfAttention(width, spectral_norm))
            layers.append(sn(nn.Conv2d(width, width * 2, 4, 2, 1, bias=False)))
            if batchnorm:
                layers.append(nn.BatchNorm2d(width * 2))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width, resolution = width * 2, resolution // 2
        layers.append(sn(nn.Conv2d(width, 1, 4, 1, 0, bias=False)))
        self.main = nn.Sequential(*layers)
        # Projection discriminator: the class term reads the last 4x4 features, summed over positions.
        self.projection = ClassProjection(num_classes, width, spectral_norm) if num_classes else None
        # The tutorial's last layer.  Training uses the logits from forward(); see ganforge.nets.
        self.output_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        features = self.main[:-1](x)
        logits = self.main[-1](features).view(-1)
        if self.projection is not None:
            logits = logits + self.projection(features.sum(dim=(2, 3)), y)
        return logits

    def probability(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.output_activation(self.forward(x, y))


def build_dcgan_family(cfg: Config, upsampling_stage: UpsamplingStage) -> tuple[nn.Module, nn.Module]:
    m, d = cfg.model, cfg.data
    G = DCGANGenerator(m.nz, m.ngf, d.channels, d.image_size, upsampling_stage=upsampling_stage,
                       num_classes=m.num_classes, attention=m.attention, spectral_norm=m.spectral_norm_g,
                       latent_groups=m.latent_groups)
    D = DCGANDiscriminator(m.ndf, d.channels, d.image_size, batchnorm=m.d_batchnorm,
                           spectral_norm=m.spectral_norm, num_classes=m.num_classes, attention=m.attention)
    initialise(G, m.init)
    initialise(D, m.init)
    return G, D


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    return build_dcgan_family(cfg, transposed_conv_stage)
