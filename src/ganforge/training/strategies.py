"""Small, separate pieces the training step calls: conditions, label targets, D-input transforms, penalties,
G terms.

Each piece is a callable with a no-op default, so the step in :mod:`ganforge.training.step` reads like
the tutorial and every strategy can be read (and tested) on its own.  :mod:`ganforge.training.build`
turns the config into pieces; the pieces with more to them live in their own modules:

- losses: :mod:`ganforge.training.losses`
- augmentation (DiffAugment, ADA): :mod:`ganforge.training.augment`
- penalties (R1, WGAN-GP): :mod:`ganforge.training.penalties`
- G terms: feature matching :mod:`ganforge.training.feature_match`
- EMA of G: :mod:`ganforge.training.ema`; divergence guard: :mod:`ganforge.training.guard`
- optimisers and learning-rate schedules: :mod:`ganforge.training.optim`, :mod:`ganforge.training.schedules`
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from ganforge.config import Config


class DLabels(NamedTuple):
    """What D conditions on for the real batch and for the fake batch (None: nothing)."""
    real: torch.Tensor | None = None
    fake: torch.Tensor | None = None


class Conditions:
    """What a step conditions G and D on, given the real batch's labels and the fakes' latents z:
    ``(G's labels, D's labels)``.  By default nothing: an unconditional model."""

    def __call__(self, labels: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor | None, DLabels]:
        return None, DLabels()


class ClassConditions(Conditions):
    """``model.num_classes``: G draws the classes of the real batch, so D compares like with like."""

    def __call__(self, labels, z):
        return labels, DLabels(labels, labels)


class Targets:
    """The targets D's loss sees for reals and fakes.

    One-sided label smoothing (Salimans et al. 2016): ``loss.real_label=0.9`` keeps D from growing
    over-confident on reals, which gives G larger gradients; the fake target stays 0.  Label flipping:
    with probability ``loss.label_flip`` an image's real and fake targets swap (noisy labels).
    """

    def __init__(self, cfg: Config):
        self.real, self.fake, self.flip = cfg.loss.real_label, cfg.loss.fake_label, cfg.loss.label_flip

    def __call__(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        real = torch.full((n,), self.real, device=device)
        fake = torch.full((n,), self.fake, device=device)
        if self.flip > 0:
            swap = torch.rand(n, device=device) < self.flip
            real, fake = torch.where(swap, fake, real), torch.where(swap, real, fake)
        return real, fake


class DInput:
    """Transforms applied identically to D's real and fake inputs (instance noise, augmentation)."""

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        return x

    def observe(self, real_logits: torch.Tensor) -> None:
        """Feedback from D's output on reals (adaptive augmentation uses it)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def log(self) -> dict:
        return {}


class InstanceNoise(DInput):
    """Gaussian noise on everything D sees (Sønderby et al. 2016; Arjovsky & Bottou 2017).

    Real and fake distributions that do not overlap give D a perfect, useless-to-G decision; noise
    makes them overlap.  Its standard deviation starts at ``noise.std`` (images are in [-1, 1], so 0.1
    is mild, 0.5 strong) and falls linearly to zero at generator step ``noise.anneal_steps`` (0: stays
    constant).
    """

    def __init__(self, std: float, anneal_steps: int):
        self.std, self.anneal_steps = std, anneal_steps
        self.current = std

    def std_at(self, step: int) -> float:
        if not self.anneal_steps:
            return self.std
        return self.std * max(0.0, 1.0 - step / self.anneal_steps)

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        self.current = self.std_at(step)
        if self.current <= 0:
            return x
        return x + self.current * torch.randn_like(x)

    def log(self) -> dict:
        return {"noise_std": round(self.current, 6)}


class DInputChain(DInput):
    """Several D-input transforms in order (augmentation first, then noise on the augmented image)."""

    def __init__(self, parts: list[DInput]):
        self.parts = parts

    def __call__(self, x: torch.Tensor, step: int) -> torch.Tensor:
        for part in self.parts:
            x = part(x, step)
        return x

    def observe(self, real_logits: torch.Tensor) -> None:
        for part in self.parts:
            part.observe(real_logits)

    def state_dict(self) -> dict:
        return {type(p).__name__: p.state_dict() for p in self.parts}

    def load_state_dict(self, state: dict) -> None:
        for p in self.parts:
            p.load_state_dict(state.get(type(p).__name__, {}))

    def log(self) -> dict:
        out: dict = {}
        for p in self.parts:
            out.update(p.log())
        return out


class Penalty:
    """Extra terms of D's loss (R1, R2, gradient penalty, LeCam, reconstruction); zero by default.

    Called once per discriminator step with D, its real and fake inputs as the step built them, what D
    conditions on for each (:class:`DLabels`), the number of D steps before this one (lazy penalties
    count them) and D's logits on both batches.  A penalty that keeps state (LeCam's moving averages)
    saves it in ``state_dict``, which the checkpoint stores, so a resumed run continues with the same
    state."""

    def __call__(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: DLabels, step: int,
                 real_logits: torch.Tensor, fake_logits: torch.Tensor):
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class GTerm:
    """Extra terms of G's loss that need more than D's logits (feature matching); none by default.

    ``start`` runs once when training starts, with the loader's dataset, the device and the latent
    groups' clusters of the images (None without groups; a term that reads the training images reads
    them there); the step then calls the term once per generator step
    with G, the number of generator steps before this one, the step's batch of samples (with its
    graph) and their latents (both None in a step that makes none, where a term that needs samples
    draws its own), and adds what it returns (a tensor, or None for nothing) to G's loss before the
    one backward pass.  State
    goes in ``state_dict``, which the checkpoint stores; ``log`` gives detached tensors for the metrics
    line."""

    name = "term"

    def start(self, dataset, device: torch.device, clusters: torch.Tensor | None = None) -> None:
        pass

    def __call__(self, G: nn.Module, step: int, fake: torch.Tensor | None = None,
                 z: torch.Tensor | None = None) -> torch.Tensor | None:
        return None

    def log(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def build_targets(cfg: Config) -> Targets:
    """The label targets of ``loss.*`` (kept here for code that imports it from this module; the other
    builders are in :mod:`ganforge.training.build`)."""
    return Targets(cfg)
