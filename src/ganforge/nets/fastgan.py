"""``fastgan``: the few-shot GAN of Liu et al. (ICLR 2021, "Towards Faster and Stabilized GAN Training
for High-fidelity Few-shot Image Synthesis"), 32 px and up.

It is built for the regime ganforge's small sets live in (a few thousand images, little compute):

Generator
    z is normalised to the unit sphere, a 4x4 transposed conv makes a 4x4 map, and each doubling is
    nearest upsampling, a 3x3 conv, BatchNorm and a GLU (the conv makes twice the channels and half
    of them gate the other half).  Every other block is a "comp" block with a second conv and learned
    per-pixel noise.  **Skip-layer excitation** (SLE): a small map (4x4 or 8x8) is pooled, squeezed
    through two convs and a sigmoid into one gain per channel, which multiplies a map 8 or 16 times
    larger.  It gives the large maps a path to the global layout that does not go through every block.
Discriminator
    A 4x4 stride-2 conv, then residual down blocks to 8x8, each the average of a strided-conv path
    and an average-pool + 1x1-conv path, then a 1x1 conv and a 4x4 conv to a 5x5 map of logits whose
    mean is D's output.  **Self-supervision**: small decoders rebuild the real image from D's 8x8
    features, and a quarter of it from a quarter of the 16x16 features; the reconstruction error
    (:class:`~ganforge.training.penalties.ReconstructionLoss`, ``loss.recon``) is part of D's loss on
    reals.  D must keep features that describe the whole image, which is what keeps a D trained on
    a few images from memorising them.

Width: the channels at resolution ``r`` are ``ngf * min(16, 64 / r)`` (the paper's table: 16x at 4 px,
halving with each doubling; ``ngf`` at 64 px), at least 4, and D's map at ``r`` has the channels G has
at ``2r``, from ``ndf``.  On a CPU, ``ngf`` and ``ndf`` of 8 make a step cheap.  ``model.fastgan_decoder`` is the size the decoders rebuild
at (0: no decoders and no self-supervision).

Conditional variant (``model.num_classes``): conditional BatchNorm in G from a shared class embedding,
and a projection term in D on its pooled 8x8 features, as the other families have.

Differences from the paper, on purpose: the reconstruction loss is L1 or MSE rather than LPIPS (which
would need another pretrained network), and the decoders rebuild at ``model.fastgan_decoder`` pixels
(the paper: 128) so that a CPU can afford them.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.config import Config
from ganforge.modules import ClassProjection, batchnorm, maybe_spectral_norm, refresh_spectral_norm
from ganforge.modules.conditional import SHARED_EMBEDDING_DIM
from ganforge.modules.latent_groups import label_or_group
from ganforge.nets.init import initialise

#: The smallest and largest image sizes the family builds.
MIN_SIZE, MAX_SIZE = 32, 1024


def sle_pairs(image_size: int) -> list[tuple[int, int]]:
    """(small, large) resolutions joined by skip-layer excitation.

    The paper joins 4->64, 8->128, 16->256, 32->512 at 256 px and up (a factor of 16); below 128 px that
    would leave nothing to join, so there the factor is 8 (4->32, 8->64), as lightweight-gan does."""
    factor = 16 if image_size >= 128 else 8
    return [(s, s * factor) for s in (4, 8, 16, 32) if s * factor <= image_size]


def widths(base: int, image_size: int) -> dict[int, int]:
    """Channels at each resolution 4 .. image_size: ``16 * base`` at 4 px, halving with each doubling, so
    ``base`` at 64 px (the paper's table, without its plateau at 64 px), and at least 4."""
    return {r: max(4, round(base * min(16.0, 64 / r))) for r in (4 * 2 ** i for i in range(int(math.log2(image_size)) - 1))}


class NoiseInjection(nn.Module):
    """Per-pixel Gaussian noise with one learned strength, starting at zero (StyleGAN's, FastGAN's)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class GLUConv(nn.Module):
    """3x3 conv to twice the channels, (optional noise), BatchNorm (conditional when given a condition), GLU."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, noise: bool, spectral_norm: bool):
        super().__init__()
        self.conv = maybe_spectral_norm(nn.Conv2d(in_ch, out_ch * 2, 3, 1, 1, bias=False), spectral_norm)
        self.noise = NoiseInjection() if noise else None
        self.bn = batchnorm(out_ch * 2, cond_dim, spectral_norm)
        self.conditional = cond_dim > 0

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.conv(x)
        if self.noise is not None:
            h = self.noise(h)
        h = self.bn(h, cond) if self.conditional else self.bn(h)
        return F.glu(h, dim=1)


class UpBlock(nn.Module):
    """Nearest upsampling, then one GLU conv ("comp" blocks: two, with noise)."""

    def __init__(self, in_ch: int, out_ch: int, comp: bool, cond_dim: int = 0, spectral_norm: bool = False):
        super().__init__()
        self.first = GLUConv(in_ch, out_ch, cond_dim, comp, spectral_norm)
        self.second = GLUConv(out_ch, out_ch, cond_dim, True, spectral_norm) if comp else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.first(F.interpolate(x, scale_factor=2, mode="nearest"), cond)
        return self.second(h, cond) if self.second is not None else h


class SkipExcitation(nn.Module):
    """One gain per channel of a large map, from a small one: pool to 4x4, 4x4 conv, Swish, 1x1 conv, sigmoid."""

    def __init__(self, small_ch: int, large_ch: int, spectral_norm: bool = False):
        super().__init__()
        sn = lambda m: maybe_spectral_norm(m, spectral_norm)  # noqa: E731
        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(4), sn(nn.Conv2d(small_ch, large_ch, 4, 1, 0, bias=False)),
                                  nn.SiLU(), sn(nn.Conv2d(large_ch, large_ch, 1, 1, 0, bias=False)), nn.Sigmoid())

    def forward(self, small: torch.Tensor, large: torch.Tensor) -> torch.Tensor:
        return large * self.main(small)


class FastGANGenerator(nn.Module):
    #: z is normalised to the sphere before this layer, which would undo truncation by scaling z: sampling
    #: truncates what enters this layer instead (``ganforge.sampling.truncated``).
    truncation_input = "start"

    def __init__(self, nz: int = 100, ngf: int = 16, nc: int = 3, image_size: int = 64, *, num_classes: int = 0,
                 spectral_norm: bool = False, latent_groups: int = 0):
        super().__init__()
        self.nz, self.image_size, self.latent_groups = nz, image_size, latent_groups
        w = widths(ngf, image_size)
        cond_dim = SHARED_EMBEDDING_DIM if num_classes or latent_groups else 0
        sn = lambda m: maybe_spectral_norm(m, spectral_norm)  # noqa: E731
        self.start = sn(nn.ConvTranspose2d(nz, w[4] * 2, 4, 1, 0, bias=False))
        self.start_bn = batchnorm(w[4] * 2, cond_dim, spectral_norm)
        self.conditional = cond_dim > 0
        # One block per doubling; the paper's "comp" blocks sit at 8, 32, 128, 512 px.
        self.blocks = nn.ModuleDict()
        r = 8
        while r <= image_size:
            comp = int(math.log2(r)) % 2 == 1
            self.blocks[str(r)] = UpBlock(w[r // 2], w[r], comp, cond_dim, spectral_norm)
            r *= 2
        self.excitations = nn.ModuleDict({f"{s}to{l}": SkipExcitation(w[s], w[l], spectral_norm)
                                          for s, l in sle_pairs(image_size)})
        self.to_image = nn.Sequential(sn(nn.Conv2d(w[image_size], nc, 3, 1, 1, bias=False)), nn.Tanh())
        self.shared = nn.Embedding(num_classes or latent_groups, cond_dim) if cond_dim else None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = label_or_group(z, y, self.latent_groups)  # before z is normalised: the group is z's angle
        cond = self.shared(y) if self.shared is not None else None
        z = F.normalize(z, dim=1)  # on the sphere: the scale of z carries nothing
        h = self.start(z.view(z.shape[0], self.nz, 1, 1))
        h = F.glu(self.start_bn(h, cond) if self.conditional else self.start_bn(h), dim=1)
        maps = {4: h}
        gates = {int(k.split("to")[1]): (int(k.split("to")[0]), m) for k, m in self.excitations.items()}
        r = 8
        while r <= self.image_size:
            h = self.blocks[str(r)](h, cond)
            if r in gates:
                small, excite = gates[r]
                h = excite(maps[small], h)
            maps[r] = h
            r *= 2
        return self.to_image(h)


class DownBlock(nn.Module):
    """Half the size: the average of a strided-conv path (4x4 s2, BN, LReLU, 3x3, BN, LReLU) and an
    average-pool path (pool, 1x1 conv, BN, LReLU)."""

    def __init__(self, in_ch: int, out_ch: int, spectral_norm: bool = False):
        super().__init__()
        sn = lambda m: maybe_spectral_norm(m, spectral_norm)  # noqa: E731
        self.main = nn.Sequential(
            sn(nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=False)), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2, inplace=True),
            sn(nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2, inplace=True))
        self.direct = nn.Sequential(nn.AvgPool2d(2, 2), sn(nn.Conv2d(in_ch, out_ch, 1, 1, 0, bias=False)),
                                    nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


class Decoder(nn.Module):
    """Rebuilds an image of ``out_size`` from an 8x8 feature map: GLU up blocks halving the width, then a
    3x3 conv and Tanh."""

    def __init__(self, in_ch: int, nc: int, out_size: int, spectral_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        ch, r = in_ch, 8
        while r < out_size:
            layers.append(UpBlock(ch, max(ch // 2, 8), comp=False, spectral_norm=spectral_norm))
            ch, r = max(ch // 2, 8), r * 2
        self.blocks = nn.ModuleList(layers)
        self.to_image = nn.Sequential(maybe_spectral_norm(nn.Conv2d(ch, nc, 3, 1, 1, bias=False), spectral_norm),
                                      nn.Tanh())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = features
        for block in self.blocks:
            h = block(h)
        return self.to_image(h)


class FastGANDiscriminator(nn.Module):
    def __init__(self, ndf: int = 16, nc: int = 3, image_size: int = 64, *, num_classes: int = 0,
                 decoder_size: int = 32, spectral_norm: bool = False):
        super().__init__()
        sn = lambda m: maybe_spectral_norm(m, spectral_norm)  # noqa: E731
        w = widths(ndf, image_size)  # D's map at resolution r gets the channels G has at 2r
        ch = lambda r: w[min(2 * r, image_size)]  # noqa: E731
        self.stem = nn.Sequential(sn(nn.Conv2d(nc, ch(image_size // 2), 4, 2, 1, bias=False)),
                                  nn.LeakyReLU(0.2, inplace=True))
        self.down = nn.ModuleDict()
        r = image_size // 2
        while r > 8:
            self.down[str(r // 2)] = DownBlock(ch(r), ch(r // 2), spectral_norm)
            r //= 2
        c8 = ch(8)
        self.head = nn.Sequential(sn(nn.Conv2d(c8, c8, 1, 1, 0, bias=False)), nn.BatchNorm2d(c8),
                                  nn.LeakyReLU(0.2, inplace=True), sn(nn.Conv2d(c8, 1, 4, 1, 0, bias=False)))
        self.projection = ClassProjection(num_classes, c8, spectral_norm) if num_classes else None
        self.decoder_size = decoder_size
        if decoder_size:
            self.decoder_whole = Decoder(c8, nc, decoder_size, spectral_norm)
            self.decoder_part = Decoder(ch(16), nc, decoder_size, spectral_norm)
        # Features of the last real batches, kept for the reconstruction loss so it does not run the
        # trunk a second time (see reconstruct()); a real and a fake batch go through D per step.
        self._features: list[tuple[torch.Tensor, dict[int, torch.Tensor]]] = []

    def features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        h = self.stem(x)
        maps = {x.shape[-1] // 2: h}
        for r, block in self.down.items():
            h = block(h)
            maps[int(r)] = h
        return maps

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        maps = self.features(x)
        # Not under torch.compile: a list kept on the module is a side effect the compiled graph would
        # guard on (D compiled again for each length it has), and CUDA graphs overwrite the kept maps at
        # their next replay; reconstruct() then runs the trunk again, eagerly.
        if self.decoder_size and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            self._features = [*self._features[-1:], (x, maps)]
        logits = self.head(maps[8]).mean(dim=(1, 2, 3))
        if self.projection is not None:
            logits = logits + self.projection(maps[8].sum(dim=(2, 3)), y)
        return logits

    def reconstruct(self, x: torch.Tensor, quarter: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(whole image rebuilt, its target, quarter ``quarter`` (0-3) rebuilt, its target), all at
        ``decoder_size``.  Reuses the features of the forward pass on this same tensor when there was one."""
        maps = next((m for t, m in reversed(self._features) if t is x), None)
        if maps is None:
            maps = self.features(x)
        self._features = []
        size = self.decoder_size
        whole_target = F.interpolate(x, size=(size, size), mode="area")
        f16 = maps[16]
        row, col = divmod(quarter, 2)
        part = f16[:, :, row * 8:(row + 1) * 8, col * 8:(col + 1) * 8]
        half = x.shape[-1] // 2
        part_target = x[:, :, row * half:(row + 1) * half, col * half:(col + 1) * half]
        part_target = F.interpolate(part_target, size=(size, size), mode="area")
        return self.decoder_whole(maps[8]), whole_target, self.decoder_part(part), part_target


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    m, d = cfg.model, cfg.data
    G = FastGANGenerator(m.nz, m.ngf, d.channels, d.image_size, num_classes=m.num_classes,
                         spectral_norm=m.spectral_norm_g, latent_groups=m.latent_groups)
    D = FastGANDiscriminator(m.ndf, d.channels, d.image_size, num_classes=m.num_classes,
                             decoder_size=m.fastgan_decoder, spectral_norm=m.spectral_norm)
    initialise(G, m.init)
    initialise(D, m.init)
    # GLU convs are twice as wide as they are deep, and the power method converges more slowly on
    # them: more iterations at the start, so the first steps normalise by the true top singular value.
    refresh_spectral_norm(G, 100)
    refresh_spectral_norm(D, 100)
    return G, D
