"""Small, separate pieces the training step calls: label targets, D-input transforms, penalties, EMA.

Each piece is a callable with a no-op default, so the step in :mod:`ganforge.training.step` reads like
the tutorial and every strategy can be read (and tested) on its own.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ganforge.config import Config


class Targets:
    """The targets D's loss sees: real_label / fake_label (one-sided smoothing), optionally flipped."""

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


class Penalty:
    """Extra terms of D's loss (R1, gradient penalty); zero by default."""

    def __call__(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels, step: int):
        return None


def build_targets(cfg: Config) -> Targets:
    return Targets(cfg)


def build_d_input(cfg: Config) -> DInput:
    return DInput()


def build_penalties(cfg: Config) -> list[Penalty]:
    return []
