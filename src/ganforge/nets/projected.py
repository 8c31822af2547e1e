"""``model.discriminator=projected``: a discriminator that judges images through a frozen ImageNet network
(Sauer et al., NeurIPS 2021, "Projected GANs Converge Faster"), for any generator family.

A D trained from scratch on a few thousand images must first learn what edges, parts and objects are
before it can tell G anything about them; on a CPU budget it never gets there, and G learns colours and
blobs.  A pretrained network already has those features.  The projected D:

1. **Looks through EfficientNet-Lite1** with its ImageNet weights, frozen (weights and BatchNorm
   statistics), at four depths: the maps at 1/4, 1/8, 1/16 and 1/32 of the input.  Lite1 because the
   metrics use Lite0 and Lite2 (:mod:`ganforge.modules.pretrained`): a D that pleased its own features
   would have to fool two other networks to move the scores.
2. **Mixes them with fixed random projections**, as the paper found essential: a 1x1 conv per depth
   (cross-channel mixing, to ``ndf * 2**i`` channels) and a top-down path that adds each deeper map,
   upsampled and projected by another random 1x1 conv, to the one above it (cross-scale mixing).  The
   projections are random, frozen and kept in the state dict; they spread the pretrained features over
   more directions so that D cannot rest on a few of them.
3. **Judges each depth with its own small trained head**: stride-2 4x4 convs (spectral norm, BatchNorm,
   LeakyReLU) down to 4x4, then a 4x4 conv to one logit (a smaller map gets a conv of its own size).
   D's output is the mean of the heads' logits.
4. **Optionally judges the raw pixels too** (``model.projected_pixels``: a size, 0 for none): the ImageNet
   features were trained to ignore much of the colour, and G's colours drifted (a G of two colours, red and
   blue, on emoji); a small head on the image itself, at 16 or 32 px, sees them.

Only the heads train, so a D step is cheap; G's step runs backwards through the frozen network.  Images
reach the network as it was trained to see them: in [0, 1] RGB (grey repeated), resized to
``model.projected_size`` (0: the image size; the paper resizes small images to 224, which a CPU cannot
afford), normalised with the ImageNet mean and deviation.  RGBA is refused: the network sees no alpha,
so nothing would judge G's.  With ``model.num_classes`` each head adds a projection term on its pooled
4x4 features.

Differences from the paper, on purpose: one output per image (ganforge's D contract) rather than every
head's patch logits, Lite1 rather than Lite0 (see 1.), and a simpler fusion (add, then a 1x1 conv)
without the paper's extra upsampling.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.config import Config, ConfigError
from ganforge.modules import ClassProjection, maybe_spectral_norm, refresh_spectral_norm
from ganforge.modules.pretrained import TRAINING_VARIANT, FeatureStages, resize_to
#: The smallest input the network's four depths make sense at (1/32 of it is a 1x1 map).
MIN_INPUT = 32


def check(cfg: Config) -> None:
    """What the projected D refuses, found without building it."""
    m, d = cfg.model, cfg.data
    if d.channels == 4:
        raise ConfigError("model.discriminator=projected judges RGB through an ImageNet network, which sees no "
                          "alpha channel: use data.channels=3 (RGBA composited on data.background) or the "
                          "family's own discriminator (model.discriminator=own)")
    size = m.projected_size or d.image_size
    if size < MIN_INPUT or size % 32:
        raise ConfigError(f"model.projected_size={m.projected_size} gives the feature network {size} px: it needs "
                          f"a multiple of 32, at least {MIN_INPUT} (0 means the image size, data.image_size)")
    if m.projected_pixels and (m.projected_pixels < 4 or m.projected_pixels & (m.projected_pixels - 1)):
        raise ConfigError(f"model.projected_pixels={m.projected_pixels}: the raw-pixel head needs a power of two, "
                          "at least 4 (16 or 32 is usual; 0: no pixel head)")
    if m.ndf < 4:
        raise ConfigError(f"model.ndf={m.ndf} is too narrow for the projected D's heads: use 4 or more")


class RandomProjections(nn.Module):
    """Cross-channel mixing (a random 1x1 conv per depth) and cross-scale mixing (each deeper map, upsampled
    and projected by another random 1x1 conv, added to the one above it).  Frozen after initialisation."""

    def __init__(self, in_channels: list[int], out_channels: list[int]):
        super().__init__()
        self.channel_mix = nn.ModuleList(nn.Conv2d(c, o, 1) for c, o in zip(in_channels, out_channels))
        self.scale_mix = nn.ModuleList(nn.Conv2d(out_channels[i + 1], out_channels[i], 1)
                                       for i in range(len(out_channels) - 1))
        self.requires_grad_(False)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = [conv(m) for conv, m in zip(self.channel_mix, maps)]
        for i in range(len(mixed) - 2, -1, -1):
            deeper = F.interpolate(mixed[i + 1], size=mixed[i].shape[-2:], mode="bilinear", align_corners=False)
            mixed[i] = mixed[i] + self.scale_mix[i](deeper)
        return mixed


class Head(nn.Module):
    """One depth's judge: stride-2 4x4 convs (spectral norm, BatchNorm, LeakyReLU) down to 4x4, doubling the
    channels (at most 4x), then a conv the size of the map to one logit."""

    def __init__(self, channels: int, size: int, num_classes: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        ch = channels
        while size > 4:
            out = min(ch * 2, channels * 4)
            layers += [maybe_spectral_norm(nn.Conv2d(ch, out, 4, 2, 1, bias=False), True), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch, size = out, size // 2
        self.down = nn.Sequential(*layers)
        self.logit = maybe_spectral_norm(nn.Conv2d(ch, 1, size, 1, 0), True)
        self.projection = ClassProjection(num_classes, ch, True) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.down(x)
        logit = self.logit(h).flatten(1).mean(dim=1)
        if self.projection is not None:
            logit = logit + self.projection(h.sum(dim=(2, 3)), y)
        return logit


class PixelHead(nn.Module):
    """A judge of the raw pixels at ``size`` px (``model.projected_pixels``): the ImageNet features are
    trained to ignore much of an image's colour, so beside them a small head sees the colours themselves."""

    def __init__(self, nc: int, channels: int, size: int, num_classes: int = 0):
        super().__init__()
        self.size = size
        self.stem = nn.Sequential(maybe_spectral_norm(nn.Conv2d(nc, channels, 3, 1, 1), True),
                                  nn.LeakyReLU(0.2, inplace=True))
        self.head = Head(channels, size, num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.head(self.stem(resize_to(x, self.size)), y)


class ProjectedDiscriminator(nn.Module):
    def __init__(self, ndf: int = 16, nc: int = 3, image_size: int = 64, *, input_size: int = 0,
                 num_classes: int = 0, pixel_size: int = 0):
        super().__init__()
        self.nc, self.input_size = nc, input_size or image_size
        self.features = FeatureStages(TRAINING_VARIANT)
        widths = [ndf * 2 ** i for i in range(len(self.features.channels))]
        self.projections = RandomProjections(self.features.channels, widths)
        sizes = [self.input_size // 2 ** (i + 2) for i in range(len(widths))]
        self.heads = nn.ModuleList(Head(w, s, num_classes) for w, s in zip(widths, sizes))
        self.pixel_head = PixelHead(nc, ndf, pixel_size, num_classes) if pixel_size else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        logits = [self.pixel_head(x, y)] if self.pixel_head is not None else []
        maps = self.projections(self.features(self.features.prepare(x, self.input_size)))
        logits += [head(m, y) for head, m in zip(self.heads, maps)]
        return torch.stack(logits, dim=1).mean(dim=1)


def build_discriminator(cfg: Config) -> nn.Module:
    check(cfg)
    m, d = cfg.model, cfg.data
    # Building the frozen network draws no random numbers that matter (its weights are loaded), but the
    # random projections and heads do, from the global generator, as every other family's layers do.
    D = ProjectedDiscriminator(m.ndf, d.channels, d.image_size, input_size=m.projected_size,
                               num_classes=m.num_classes, pixel_size=m.projected_pixels)
    refresh_spectral_norm(D, 100)  # the first steps normalise by the true top singular value
    return D
