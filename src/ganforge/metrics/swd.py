"""Sliced Wasserstein distance between Laplacian-pyramid patches (``--features swd``): a score with no network.

Karras et al. 2018 ("Progressive Growing of GANs", ICLR, appendix D) compare the local image structure of
two sets at every scale:

1. each image's Laplacian pyramid (5x5 binomial filter, mirrored edges), from its own resolution down
   to 16 px: the finest level holds edges and texture, the coarsest the overall shapes and colours;
2. at each level, 7x7 patches at random places (``PATCHES_PER_IMAGE`` per image), each a 147-d
   descriptor; each set's descriptors are normalised per colour channel (its own mean and standard
   deviation over all its patches);
3. per level, the sliced Wasserstein distance of the two sets of descriptors: project both onto random
   unit directions, sort, and average the absolute differences of the sorted projections
   (``PROJECTIONS`` directions in ``REPEATS`` repeats, as the paper's 4 x 128);
4. report each level and their mean, multiplied by 1,000 as the paper does: ``swd_64px``, ``swd_32px``,
   ``swd_16px``, ``swd_mean``.  Lower is better; a set against itself scores about 0.

No ImageNet network sees the images, so training that matches ImageNet features (``loss.feature_match``,
``model.discriminator=projected``) cannot have learnt to please it (docs/evaluation.md).  Patch places and
directions come from fixed seeds: the same two sets always score the same.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

PATCH = 7
PATCHES_PER_IMAGE = 128
#: Descriptors kept per level and set at most (fewer patches per image for large sets): the paper's
#: 16,384 images x 128 patches would hold gigabytes at 64 px; 2^17 keeps a level's set near 40 MB.
MAX_DESCRIPTORS = 1 << 17
PROJECTIONS = 128  # directions per repeat (the paper's code: 4 repeats of 128, 512 in all)
REPEATS = 4
SMALLEST_LEVEL = 16  # px: the coarsest pyramid level
SCALE = 1e3  # the paper reports SWD x 10^3
PATCH_SEED, DIRECTION_SEED = 1, 2

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
_GAUSS = (_BINOMIAL[:, None] * _BINOMIAL[None, :] / 256.0).view(1, 1, 5, 5)


def levels(image_size: int) -> list[int]:
    """The pyramid's resolutions, finest first: ``image_size`` halved down to 16 px (one level below 16 px)."""
    out = [int(image_size)]
    while out[-1] // 2 >= SMALLEST_LEVEL:
        out.append(out[-1] // 2)
    return out


def _blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    c = x.shape[1]
    kernel = (_GAUSS * gain).to(x).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=c)


def laplacian_pyramid(images: torch.Tensor, n_levels: int) -> list[torch.Tensor]:
    """Band-pass levels of (B, C, H, W) float images, finest first; the last level is the blurred residual."""
    pyramid = [images.float()]
    for _ in range(1, n_levels):
        down = _blur(pyramid[-1])[:, :, ::2, ::2]
        up = torch.zeros_like(pyramid[-1])
        up[:, :, ::2, ::2] = down
        pyramid[-1] = pyramid[-1] - _blur(up, gain=4.0)
        pyramid.append(down)
    return pyramid


def random_patches(level: torch.Tensor, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """``per_image`` random 7x7 patches of every image of (B, C, H, W) ``level``: (B * per_image, C, 7, 7)."""
    b, c, h, w = level.shape
    if h < PATCH or w < PATCH:
        raise ValueError(f"a pyramid level of {h}x{w} px is smaller than the {PATCH}x{PATCH} patches")
    ys = torch.randint(0, h - PATCH + 1, (b, per_image), generator=generator)
    xs = torch.randint(0, w - PATCH + 1, (b, per_image), generator=generator)
    offsets = torch.arange(PATCH)
    rows = (ys[..., None] + offsets).view(b, per_image, 1, PATCH, 1)
    cols = (xs[..., None] + offsets).view(b, per_image, 1, 1, PATCH)
    img = torch.arange(b).view(b, 1, 1, 1, 1)
    chan = torch.arange(c).view(1, 1, c, 1, 1)
    return level.cpu()[img, chan, rows, cols].reshape(b * per_image, c, PATCH, PATCH)


class PatchDescriptors:
    """Collects one set's descriptors, level by level, from batches of uint8 RGB images of one size."""

    def __init__(self, n_images: int, patches_per_image: int | None = None):
        self.per_image = patches_per_image or max(1, min(PATCHES_PER_IMAGE, MAX_DESCRIPTORS // max(1, n_images)))
        self.generator = torch.Generator().manual_seed(PATCH_SEED)
        self.levels: list[int] | None = None
        self.parts: list[list[torch.Tensor]] = []
        self.count = 0

    def add(self, images: torch.Tensor) -> None:
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"SWD needs square images, got {tuple(images.shape[-2:])}")
        if self.levels is None:
            self.levels = levels(images.shape[-1])
            self.parts = [[] for _ in self.levels]
        elif images.shape[-1] != self.levels[0]:
            raise ValueError(f"images of {images.shape[-1]} px among images of {self.levels[0]} px")
        for parts, level in zip(self.parts, laplacian_pyramid(images.float(), len(self.levels))):
            # Half precision keeps 2^17 descriptors of 147 values at 38 MB a level.
            parts.append(random_patches(level, self.per_image, self.generator).half())
        self.count += images.shape[0]

    def finish(self) -> list[torch.Tensor]:
        """Each level's descriptors (N, 147), normalised per colour channel over the whole set."""
        if self.levels is None:
            raise ValueError("no images were given")
        out = []
        for parts in self.parts:
            d = torch.cat(parts).float()
            mean = d.mean(dim=(0, 2, 3), keepdim=True)
            std = d.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)  # a flat set: all patches equal
            out.append(((d - mean) / std).flatten(1))
        return out


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, projections: int = PROJECTIONS, repeats: int = REPEATS,
                       seed: int = DIRECTION_SEED) -> float:
    """Mean over ``repeats`` x ``projections`` random unit directions of the 1-D Wasserstein-1 distance between
    the projections of the rows of ``a`` and ``b``.  Sets of different sizes: the larger is subsampled."""
    n = min(a.shape[0], b.shape[0])
    g = torch.Generator().manual_seed(seed)
    if a.shape[0] > n:
        a = a[torch.randperm(a.shape[0], generator=g)[:n]]
    if b.shape[0] > n:
        b = b[torch.randperm(b.shape[0], generator=g)[:n]]
    results = []
    for _ in range(repeats):
        dirs = torch.randn(a.shape[1], projections, generator=g)
        dirs /= dirs.norm(dim=0, keepdim=True)
        # NumPy sorts rows of floats several times faster than torch.sort on a CPU.
        pa = np.sort((a @ dirs).T.contiguous().numpy(), axis=1)
        pb = np.sort((b @ dirs).T.contiguous().numpy(), axis=1)
        results.append(float(np.abs(pa - pb).mean(dtype=np.float64)))
    return float(sum(results) / len(results))


def descriptors(batches: Iterable[torch.Tensor], n_images: int, limit: int | None = None) -> PatchDescriptors:
    """The descriptors of the images of ``batches`` (uint8 RGB, as :func:`~ganforge.metrics.features.to_uint8_rgb`
    gives them), for a set of about ``n_images``; the first ``limit`` images only, when given."""
    found = PatchDescriptors(n_images)
    for batch in batches:
        if limit is not None and found.count + batch.shape[0] >= limit:
            found.add(batch[:limit - found.count])
            break
        found.add(batch)
    return found


def swd_scores(fake: PatchDescriptors, real: PatchDescriptors) -> dict[str, float]:
    """``swd_<res>px`` for each level, finest first, and ``swd_mean``, all x 1,000."""
    if fake.levels != real.levels:
        raise ValueError(f"the two sets have different sizes ({fake.levels and fake.levels[0]} and "
                         f"{real.levels and real.levels[0]} px): read both at one size")
    out = {f"swd_{res}px": SCALE * sliced_wasserstein(f, r)
           for res, f, r in zip(fake.levels, fake.finish(), real.finish())}
    out["swd_mean"] = sum(out.values()) / len(out)
    return out
