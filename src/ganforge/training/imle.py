"""IMLE: a term of G's loss that makes every training image the nearest sample of some latent.

Implicit Maximum Likelihood Estimation (Li & Malik 2018) trains a generator without a discriminator:
for each training image, find among many random latents the one whose sample is closest, and pull
that sample towards the image.  Every image is then near some sample, so it cannot drop modes, and a
plain reconstruction loss learns the global layout (a round face, a waving flag) in a few hundred
steps, long before an adversarial game does.  Alone it gives blurred images; next to the GAN loss it
gives the adversarial game a generator that already covers the set, which is how Inclusive GAN (Yu et
al., ECCV 2020) pairs the two.  On the small sets ganforge's recipe targets, and on a CPU, this is the
difference between coloured blobs and recognisable shapes (docs/quality.md).

:class:`IMLETerm` (``loss.imle``, the weight; 0: off):

- **Matching**, every ``loss.imle_every`` generator steps: ``loss.imle_pool`` x N random latents (N:
  the training images) go through G without gradients, as sampling runs it (batch statistics, running
  statistics untouched); every image takes the latent of its nearest sample, by squared distance of
  the two shrunk to ``loss.imle_size`` pixels (the layout, not the texture; and cheap).  A conditional
  model matches an image only with samples of its own class.
- **Warm-up** (``loss.imle_warmup`` generator steps, 0 by default): the term alone trains G and D
  waits (:meth:`~ganforge.training.step.GANStep.g_only_step`); after it, the term joins the GAN loss at
  ``loss.imle`` (0: the warm-up only).
- **The term**, every generator step: a batch of (image, matched latent) pairs drawn at random, and the
  L1 distance between ``G(latent)`` and the image on a pyramid (full size and three halvings), as GLO
  (Bojanowski et al. 2018) uses, so coarse layout and fine detail both count.

The term keeps the training images in memory as uint8 (what makes the matching cheap), which suits the
small sets it is for; :meth:`IMLETerm.start` refuses a set over ``MAX_BYTES`` with the fix named.  Its
matched latents and the step of the next matching are its state, saved with every checkpoint, so a
resumed run continues exactly.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.config import ConfigError
from ganforge.sampling import generate
from ganforge.training.strategies import GTerm

#: The most training-image bytes (uint8) the term keeps in memory.
MAX_BYTES = 2 * 1024 ** 3

#: Pyramid levels of the reconstruction loss (the image and three halvings, down to at least 4 px).
PYRAMID_LEVELS = 4


def pyramid(x: torch.Tensor) -> list[torch.Tensor]:
    levels = [x]
    while len(levels) < PYRAMID_LEVELS and levels[-1].shape[-1] >= 8:
        levels.append(F.avg_pool2d(levels[-1], 2))
    return levels


def pyramid_l1(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return sum(F.l1_loss(a, b) for a, b in zip(pyramid(fake.float()), pyramid(real.float())))


class IMLETerm(GTerm):
    name = "imle"

    def __init__(self, weight: float, pool: int, every: int, size: int, nz: int, batch_size: int,
                 conditional: bool = False, warmup: int = 0):
        self.weight, self.pool, self.every, self.size = weight, pool, every, size
        self.warmup = warmup  # generator steps in which the term is G's whole loss, at weight 1
        self.nz, self.batch_size, self.conditional = nz, batch_size, conditional
        self.images: torch.Tensor | None = None  # N x C x S x S uint8, on the device
        self.images_small: torch.Tensor | None = None  # N x (C * size * size): the images at imle_size
        self.labels: torch.Tensor | None = None
        self.latents: torch.Tensor | None = None  # N x nz: each image's matched latent
        self.next_match = 0  # the generator step of the next matching
        self.last: torch.Tensor | None = None  # the term's value at the last step it ran

    # ------------------------------------------------------------------ the training set
    def start(self, dataset, device: torch.device) -> None:
        """Read the training images once (the loader's dataset; broken files left out)."""
        n = len(dataset)
        if n == 0:
            return
        first = dataset[0]  # (image, label, index of a broken file or -1): sizes the memory check
        need = n * first[0].numel()
        if need > MAX_BYTES:
            raise ConfigError(
                f"loss.imle keeps the training images in memory: {n:,} images of {tuple(first[0].shape)} need "
                f"{need / 1024 ** 3:.1f} GiB, over the {MAX_BYTES / 1024 ** 3:.0f} GiB it allows; it is meant "
                "for small sets: set loss.imle=0, or train on a subset or at a smaller data.image_size")
        images, labels = [], []
        for i in range(n):
            image, label, bad = first if i == 0 else dataset[i]
            if bad == i:  # file i is broken; the source handed over the next good one, already counted
                continue
            images.append(image)
            labels.append(int(label))
        self.images = torch.stack(images).to(device)
        self.labels = torch.tensor(labels, device=device)
        # What the matching compares, once; in blocks, so the set never exists as floats at full size.
        self.images_small = torch.cat([self._small(self._as_input(block)) for block in self.images.split(256)])
        if self.latents is not None and self.latents.shape[0] != self.images.shape[0]:
            raise ConfigError(f"the checkpoint's loss.imle state matches {self.latents.shape[0]:,} images but the "
                              f"data has {self.images.shape[0]:,}: resume on the same data.source")
        if self.latents is not None:
            self.latents = self.latents.to(device)

    def _as_input(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 127.5 - 1.0

    def _small(self, images: torch.Tensor) -> torch.Tensor:
        return F.interpolate(images.float(), size=(self.size, self.size), mode="area").flatten(1)

    @torch.no_grad()
    def match(self, G: nn.Module) -> None:
        """Give every training image the latent of its nearest sample among ``pool`` x N fresh ones."""
        images, device = self.images, self.images.device
        n = images.shape[0]
        candidates = torch.randn(self.pool * n, self.nz, device=device)
        cand_labels = self.labels.repeat(self.pool) if self.conditional else None
        samples = generate(G, candidates, cand_labels)  # [-1, 1]; BatchNorm running statistics untouched
        fake_small = self._small(samples)
        nearest = torch.empty(n, dtype=torch.long, device=device)
        for lo in range(0, n, 256):  # N x pool*N distances, a block of images at a time
            dist = torch.cdist(self.images_small[lo:lo + 256], fake_small)
            if self.conditional:
                dist = dist.masked_fill(self.labels[lo:lo + 256, None] != cand_labels[None, :], float("inf"))
            nearest[lo:lo + 256] = dist.argmin(dim=1)
        self.latents = candidates[nearest]

    # ------------------------------------------------------------------ the term
    def __call__(self, G: nn.Module, step: int, fake: torch.Tensor | None = None,
                 z: torch.Tensor | None = None) -> torch.Tensor | None:
        weight = 1.0 if step < self.warmup else self.weight
        if self.images is None or not weight:
            self.last = None  # skipped: no reading in the log
            return None
        # The module inside DistributedDataParallel: the step's D-step forward already prepared the
        # gradient sync, which sums this term's gradients with the adversarial loss's in one backward.
        G = getattr(G, "module", G)
        if self.latents is None or step >= self.next_match:
            self.match(G)
            self.next_match = step + self.every
        idx = torch.randint(0, self.images.shape[0], (self.batch_size,), device=self.images.device)
        labels = self.labels[idx] if self.conditional else None
        loss = pyramid_l1(G(self.latents[idx], labels), self._as_input(self.images[idx]))
        self.last = loss.detach()
        return weight * loss

    def log(self) -> dict:
        return {} if self.last is None else {"loss_imle": self.last}

    def state_dict(self) -> dict:
        if self.latents is None:
            return {}
        return {"latents": self.latents.detach().cpu(), "next_match": self.next_match}

    def load_state_dict(self, state: dict) -> None:
        if "latents" in state:
            device = self.images.device if self.images is not None else "cpu"
            self.latents = state["latents"].clone().to(device)
            self.next_match = int(state["next_match"])
