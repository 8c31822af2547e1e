"""``resnet``: the ResNet GAN of SNGAN and BigGAN (Miyato et al. 2018, Brock et al. 2019), 32 to 1024 pixels.

Generator: a linear layer maps z to a 4x4 feature map, then one :class:`GeneratorBlock` per doubling up
to the image size, then BN, ReLU, a 3x3 conv to the image channels and Tanh.  Discriminator: an
optimised first :class:`DiscriminatorBlock`, then downsampling blocks to 4x4 and one block that keeps
the size, then ReLU, a sum over positions and a linear layer (plus the projection term when
conditional).  Channel widths follow BigGAN's tables as multiples of ``model.ngf`` / ``model.ndf``.

Options (BigGAN's): ``model.spectral_norm`` / ``model.spectral_norm_g``, ``model.attention`` (a
self-attention block after the block of that resolution), ``model.num_classes`` (conditional
BatchNorm in G from a shared class embedding, projection D), ``model.hierarchical_z`` (z is split into
one chunk for the linear layer and one per block, each block's BatchNorms conditioned on its chunk),
and ``model.init=orthogonal``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.config import Config, ConfigError
from ganforge.modules import (ClassProjection, DiscriminatorBlock, GeneratorBlock, SelfAttention,
                              maybe_spectral_norm)
from ganforge.modules.conditional import SHARED_EMBEDDING_DIM
from ganforge.modules.latent_groups import label_or_group
from ganforge.nets.init import initialise

#: Generator widths (multiples of ngf) at 4x4 and after each block; one block per doubling.
#: 32 to 512 are BigGAN's tables; 1024 (which BigGAN has none for) adds one more block at width 1 to 512's.
G_WIDTHS = {32: [4, 4, 4, 4], 64: [16, 16, 8, 4, 2], 128: [16, 16, 8, 4, 2, 1], 256: [16, 16, 8, 8, 4, 2, 1],
            512: [16, 16, 8, 8, 4, 2, 1, 1], 1024: [16, 16, 8, 8, 4, 2, 1, 1, 1]}
#: Discriminator block output widths (multiples of ndf); every block halves the size but the last.
D_WIDTHS = {32: [4, 4, 4, 4], 64: [1, 2, 4, 8, 16], 128: [1, 2, 4, 8, 16, 16], 256: [1, 2, 4, 8, 8, 16, 16],
            512: [1, 1, 2, 4, 8, 8, 16, 16], 1024: [1, 1, 1, 2, 4, 8, 8, 16, 16]}


def latent_chunks(nz: int, blocks: int, hierarchical: bool) -> list[int]:
    """Sizes of the pieces of z: [linear layer, block 1, ..., block n] (block pieces 0 if not hierarchical)."""
    if not hierarchical:
        return [nz] + [0] * blocks
    chunk = nz // (blocks + 1)
    if chunk == 0:
        raise ConfigError(f"model.hierarchical_z splits z into {blocks + 1} pieces at this resolution, but "
                          f"model.nz={nz} is smaller: set model.nz to at least {blocks + 1}")
    return [nz - chunk * blocks] + [chunk] * blocks


class ResNetGenerator(nn.Module):
    def __init__(self, nz: int = 128, ngf: int = 64, nc: int = 3, image_size: int = 64, *, num_classes: int = 0,
                 attention: int = 0, spectral_norm: bool = False, hierarchical_z: bool = False,
                 upsample: str = "nearest", latent_groups: int = 0):
        super().__init__()
        self.latent_groups = latent_groups
        widths = [ngf * k for k in G_WIDTHS[image_size]]
        n_blocks = len(widths) - 1
        self.chunks = latent_chunks(nz, n_blocks, hierarchical_z)
        shared_dim = SHARED_EMBEDDING_DIM if num_classes or latent_groups else 0
        sn = lambda m: maybe_spectral_norm(m, spectral_norm)  # noqa: E731
        self.start_channels = widths[0]
        self.linear = sn(nn.Linear(self.chunks[0], widths[0] * 4 * 4))
        self.blocks = nn.ModuleList()
        resolution = 4
        for i in range(n_blocks):
            cond_dim = shared_dim + self.chunks[i + 1]
            self.blocks.append(GeneratorBlock(widths[i], widths[i + 1], cond_dim, spectral_norm, upsample))
            resolution *= 2
            if resolution == attention:
                self.blocks.append(SelfAttention(widths[i + 1], spectral_norm))
        self.output = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(),
                                    sn(nn.Conv2d(widths[-1], nc, 3, 1, 1)), nn.Tanh())
        self.shared = nn.Embedding(num_classes or latent_groups, shared_dim) if shared_dim else None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        pieces = list(torch.split(z, [c for c in self.chunks if c], dim=1))
        h = self.linear(pieces.pop(0)).view(z.shape[0], self.start_channels, 4, 4)
        y = label_or_group(z, y, self.latent_groups)
        shared = self.shared(y) if self.shared is not None else None
        for block in self.blocks:
            if isinstance(block, GeneratorBlock):
                conds = [c for c in (shared, pieces.pop(0) if pieces else None) if c is not None]
                h = block(h, torch.cat(conds, dim=1) if conds else None)
            else:
                h = block(h)
        return self.output(h)


class ResNetDiscriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 3, image_size: int = 64, *, num_classes: int = 0,
                 attention: int = 0, spectral_norm: bool = False):
        super().__init__()
        widths = [ndf * k for k in D_WIDTHS[image_size]]
        blocks: list[nn.Module] = []
        in_ch, resolution = nc, image_size
        for i, out_ch in enumerate(widths):
            downsample = resolution > 4
            blocks.append(DiscriminatorBlock(in_ch, out_ch, downsample, first=i == 0, spectral_norm=spectral_norm))
            in_ch, resolution = out_ch, resolution // 2 if downsample else resolution
            if resolution == attention:
                blocks.append(SelfAttention(out_ch, spectral_norm))
        self.blocks = nn.Sequential(*blocks)
        self.linear = maybe_spectral_norm(nn.Linear(in_ch, 1), spectral_norm)
        self.projection = ClassProjection(num_classes, in_ch, spectral_norm) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # sum pooling, as SNGAN/BigGAN
        logits = self.linear(h).view(-1)
        if self.projection is not None:
            logits = logits + self.projection(h, y)
        return logits


def check(cfg: Config) -> None:
    """What :func:`build` would refuse, found without building the networks (the run's preflight)."""
    if cfg.data.image_size in G_WIDTHS:
        latent_chunks(cfg.model.nz, len(G_WIDTHS[cfg.data.image_size]) - 1, cfg.model.hierarchical_z)


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    m, d = cfg.model, cfg.data
    G = ResNetGenerator(m.nz, m.ngf, d.channels, d.image_size, num_classes=m.num_classes, attention=m.attention,
                        spectral_norm=m.spectral_norm_g, hierarchical_z=m.hierarchical_z, upsample=m.upsample,
                        latent_groups=m.latent_groups)
    D = ResNetDiscriminator(m.ndf, d.channels, d.image_size, num_classes=m.num_classes, attention=m.attention,
                            spectral_norm=m.spectral_norm)
    initialise(G, m.init)
    initialise(D, m.init)
    return G, D
