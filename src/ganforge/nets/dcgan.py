"""DCGAN (Radford et al. 2015) as the PyTorch tutorial builds it, at any power-of-two resolution.

At 64x64 with ngf = ndf = 64, nz = 100 and 3 channels the layers are exactly the tutorial's:
G 3,576,704 parameters, D 2,765,568.  Each doubling of the resolution adds one stride-2 stage to both
networks; the widths of the stages are ``ngf * 2**k`` so the last hidden stage always has ``ngf``
channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from ganforge.config import Config
from ganforge.nets import register
from ganforge.nets.init import initialise


def _stages(image_size: int) -> int:
    """Number of stride-2 stages after the 4x4 start: 3 at 32, 4 at 64, ... 6 at 256."""
    return int(math.log2(image_size)) - 2


class DCGANGenerator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64):
        super().__init__()
        self.nz = nz
        n = _stages(image_size)
        width = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [
            # z, going into a convolution: (nz, 1, 1) -> (ngf * 2**(n-1), 4, 4)
            nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width // 2),
                       nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(z.view(z.shape[0], self.nz, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 3, image_size: int = 64, batchnorm: bool = True,
                 spectral_norm: bool = False):
        super().__init__()
        n = _stages(image_size)
        sn = _sn if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = [sn(nn.Conv2d(nc, ndf, 4, 2, 1, bias=False)), nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for _ in range(n - 1):
            layers.append(sn(nn.Conv2d(width, width * 2, 4, 2, 1, bias=False)))
            if batchnorm:
                layers.append(nn.BatchNorm2d(width * 2))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width *= 2
        layers.append(sn(nn.Conv2d(width, 1, 4, 1, 0, bias=False)))
        self.main = nn.Sequential(*layers)
        # The tutorial's last layer.  Training uses the logits from forward(); see ganforge.nets.
        self.output_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(x).view(-1)

    def probability(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.output_activation(self.forward(x, y))


@register("dcgan")
def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    m, d = cfg.model, cfg.data
    G = DCGANGenerator(m.nz, m.ngf, d.channels, d.image_size)
    D = DCGANDiscriminator(m.ndf, d.channels, d.image_size, batchnorm=m.d_batchnorm,
                           spectral_norm=m.spectral_norm)
    initialise(G, m.init)
    initialise(D, m.init)
    return G, D
