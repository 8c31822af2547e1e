"""Differentiable augmentation of D's inputs, for small datasets (``augment.*``).

A discriminator trained on a few thousand images memorises them and its feedback to G collapses.
Augmenting only the real images would teach G to produce augmented images; augmenting both batches,
inside the loss and differentiably, lets D see many more distinct images while G is still judged on
un-augmented ones (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

- ``augment.name=diffaugment``: every transform of ``augment.policy`` is applied to each image with
  probability ``augment.p`` (1.0: always, the paper's setting).
- ``augment.name=ada``: the same transforms, with a probability that adapts (Karras et al. 2020,
  StyleGAN2-ADA): every ``augment.ada_interval`` D steps, ``r_t = E[sign(D(x))]`` on the real batches
  is compared with ``augment.ada_target``; above it D is overfitting and p rises, below it p falls, by
  ``images / (augment.ada_kimg * 1000)`` per adjustment.  p starts at ``augment.p``.

The transforms (``augment.policy``) are those of DiffAugment: ``color`` (random brightness, saturation,
contrast), ``translation`` (shift by up to 1/8 of the image), ``cutout`` (a square of half the image side
blanked).  What fills the gaps is ``augment.fill``: ``zero`` (DiffAugment's: mid-grey in [-1, 1]),
``background`` (``data.background``) or ``reflect`` (the mirrored image, for translation).  Each image of a batch draws its own parameters, the real and the fake
batch draw independently, and all of them come from the same transform family.

Everything stays on the device: p is a tensor, and the ADA statistics accumulate in tensors that are
read back only when the log line is written.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganforge.training.strategies import DInput

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _per_image(x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, dtype=x.dtype)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_per_image(x, 1, 1, 1) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_per_image(x, 1, 1, 1) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_per_image(x, 1, 1, 1) + 0.5) + mean


def color(x: torch.Tensor) -> torch.Tensor:
    return contrast(saturation(brightness(x)))


@dataclass(frozen=True)
class Fill:
    """What translation and cutout put where there is no image (``augment.fill``): a colour per channel
    in [-1, 1] (``None``: 0, DiffAugment's own), and for translation optionally the mirrored image."""
    colour: list[float] | None = None
    reflect: bool = False

    def like(self, x: torch.Tensor) -> torch.Tensor | float:
        if self.colour is None:
            return 0.0
        return torch.tensor(self.colour, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)


def translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO, fill: Fill = Fill()) -> torch.Tensor:
    """Shift each image by its own whole number of pixels (up to ``ratio`` of its size); the uncovered
    border is ``fill``."""
    b, _, h, w = x.shape
    pad_h, pad_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-pad_h, pad_h + 1, (b, 1), device=x.device)
    dx = torch.randint(-pad_w, pad_w + 1, (b, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :] + dy + pad_h  # (b, h): source row in the padded image
    cols = torch.arange(w, device=x.device)[None, :] + dx + pad_w
    if fill.reflect:
        padded = F.pad(x, [pad_w, pad_w, pad_h, pad_h], mode="reflect")
    else:
        padded = F.pad(x - fill.like(x), [pad_w, pad_w, pad_h, pad_h]) + fill.like(x)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indexing around a slice puts the indexed dimensions first: (b, h, w, c).
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO, fill: Fill = Fill()) -> torch.Tensor:
    """Set one square of side ``ratio * size`` per image, at its own random place (it may overhang), to
    ``fill``'s colour (nothing to mirror here: reflect uses the colour too)."""
    b, _, h, w = x.shape
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + (1 - size_h % 2), (b, 1, 1), device=x.device) - size_h // 2
    left = torch.randint(0, w + (1 - size_w % 2), (b, 1, 1), device=x.device) - size_w // 2
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    hole = ((ys >= top) & (ys < top + size_h) & (xs >= left) & (xs < left + size_w)).unsqueeze(1).to(x.dtype)
    return x * (1 - hole) + hole * fill.like(x)


TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}
#: The transforms that leave a gap to fill.
FILLED = {"translation", "cutout"}


class DiffAugment(DInput):
    """The ``augment.policy`` transforms, each applied to an image with probability ``p``."""

    def __init__(self, policy: list[str], p: float = 1.0, fill: Fill = Fill()):
        unknown = [t for t in policy if t not in TRANSFORMS]
        if unknown:
            from ganforge.config import ConfigError
            raise ConfigError(f"augment.policy: unknown transform(s) {unknown}; choose from {', '.join(TRANSFORMS)}")
        self.policy = list(policy)
        self.p = torch.tensor(float(p))
        self.fill = fill

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        self.p = p = self.p.to(x.device)  # stays there: no copy per call
        for name in self.policy:
            transformed = TRANSFORMS[name](x, fill=self.fill) if name in FILLED else TRANSFORMS[name](x)
            apply = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p).to(x.dtype)
            x = apply * transformed + (1 - apply) * x
        return x

    def state_dict(self) -> dict:
        return {"p": self.p.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        if "p" in state:
            self.p = state["p"].clone()

    def log(self) -> dict:
        return {"augment_p": round(float(self.p), 6)}


class AdaptiveAugment(DiffAugment):
    """DiffAugment whose probability follows the sign of D's output on reals towards ``target``."""

    def __init__(self, policy: list[str], p: float, target: float, interval: int, kimg: float,
                 fill: Fill = Fill()):
        super().__init__(policy, p, fill)
        self.target, self.interval, self.kimg = target, interval, kimg
        self.sign_sum = torch.zeros(())
        self.count = torch.zeros(())
        self.calls = 0  # D steps since the last adjustment

    def observe(self, real_logits: torch.Tensor) -> None:
        device = real_logits.device
        self.p, self.sign_sum, self.count = self.p.to(device), self.sign_sum.to(device), self.count.to(device)
        self.sign_sum = self.sign_sum + torch.sign(real_logits.float()).sum()
        self.count = self.count + real_logits.numel()
        self.calls += 1
        if self.calls < self.interval:
            return
        r_t = self.sign_sum / self.count.clamp(min=1)
        step = self.count / (self.kimg * 1000)  # images seen in this interval, as a fraction of ada_kimg
        self.p = (self.p + torch.sign(r_t - self.target) * step).clamp(0.0, 1.0)
        self.sign_sum, self.count, self.calls = torch.zeros_like(self.sign_sum), torch.zeros_like(self.count), 0

    def state_dict(self) -> dict:
        return {"p": self.p.detach().cpu(), "sign_sum": self.sign_sum.detach().cpu(),
                "count": self.count.detach().cpu(), "calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "sign_sum" in state:
            self.sign_sum, self.count = state["sign_sum"].clone(), state["count"].clone()
            self.calls = int(state["calls"])
