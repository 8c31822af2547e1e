"""``mlp``: the fully connected GAN (Goodfellow et al. 2014) for small grayscale images such as 28x28 digits.

Generator: z -> 256 -> 512 -> 1024 -> C*S*S, each hidden layer Linear, BatchNorm, LeakyReLU(0.2), and
Tanh at the output, reshaped to (C, S, S).  Discriminator: C*S*S -> 512 -> 256 -> 1 with LeakyReLU(0.2)
(no BatchNorm: ``model.d_batchnorm`` is for the convolutional models).  Hidden widths are
``model.g_hidden`` and ``model.d_hidden``.  Class conditioning (``model.num_classes``) uses the same
pieces as the convolutional models: conditional BatchNorm in G, a projection term in D.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ganforge.config import Config
from ganforge.modules import ClassProjection, CondSequential, batchnorm, maybe_spectral_norm
from ganforge.modules.conditional import SHARED_EMBEDDING_DIM
from ganforge.nets.init import initialise


class MLPGenerator(nn.Module):
    def __init__(self, nz: int = 100, hidden: tuple[int, ...] = (256, 512, 1024), nc: int = 1,
                 image_size: int = 28, num_classes: int = 0, spectral_norm: bool = False):
        super().__init__()
        self.nz, self.out_shape = nz, (nc, image_size, image_size)
        cond_dim = SHARED_EMBEDDING_DIM if num_classes else 0
        layers: list[nn.Module] = []
        width = nz
        for h in hidden:
            layers += [maybe_spectral_norm(nn.Linear(width, h), spectral_norm),
                       batchnorm(h, cond_dim, spectral_norm, dims=1),
                       nn.LeakyReLU(0.2, inplace=True)]
            width = h
        layers += [maybe_spectral_norm(nn.Linear(width, nc * image_size * image_size), spectral_norm), nn.Tanh()]
        self.main = CondSequential(*layers)
        self.shared = nn.Embedding(num_classes, cond_dim) if num_classes else None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        cond = self.shared(y) if self.shared is not None else None
        return self.main(z.view(z.shape[0], self.nz), cond).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, hidden: tuple[int, ...] = (512, 256), nc: int = 1, image_size: int = 28,
                 num_classes: int = 0, spectral_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = nc * image_size * image_size
        for h in hidden:
            layers += [maybe_spectral_norm(nn.Linear(width, h), spectral_norm), nn.LeakyReLU(0.2, inplace=True)]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = maybe_spectral_norm(nn.Linear(width, 1), spectral_norm)
        self.projection = ClassProjection(num_classes, width, spectral_norm) if num_classes else None
        # The original model's last layer; training uses the logits (see ganforge.nets).
        self.output_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        logits = self.head(h).view(-1)
        if self.projection is not None:
            logits = logits + self.projection(h, y)
        return logits

    def probability(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.output_activation(self.forward(x, y))


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    m, d = cfg.model, cfg.data
    G = MLPGenerator(m.nz, tuple(m.g_hidden), d.channels, d.image_size, m.num_classes, m.spectral_norm_g)
    D = MLPDiscriminator(tuple(m.d_hidden), d.channels, d.image_size, m.num_classes, m.spectral_norm)
    initialise(G, m.init)
    initialise(D, m.init)
    return G, D
