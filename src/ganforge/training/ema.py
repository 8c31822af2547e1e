"""An exponential moving average of the generator's weights (``ema.*``).

A GAN's generator jitters from step to step as it chases the discriminator; the average of its recent
weights makes visibly cleaner and more stable samples and better FID (Yazici et al. 2019; used by
ProGAN, StyleGAN, BigGAN).  Training never uses the average: it only samples, so samples, metrics and
``generator.pt`` use it when ``ema.enabled`` is true.

After generator step ``s`` (counted from 1):

- while ``s <= ema.start_step`` the average is a plain copy of G (early weights are not worth keeping);
- after that ``ema = decay * ema + (1 - decay) * G``, with ``decay = ema.decay``, or with
  ``ema.warmup`` ``min(ema.decay, (1 + t) / (10 + t))`` where ``t = s - ema.start_step``, so that a short
  run is not dominated by the random initial weights;
- with ``ema.half_life_images = H`` (StyleGAN2-ADA's way, which does not change meaning with the batch
  size): ``decay = 0.5 ** (B / H)`` for ``B`` images per step, so the weight of a step halves every ``H``
  images; with ``ema.rampup = r`` the half-life is at most ``r`` times the images seen so far
  (StyleGAN2-ADA: H = 10,000 images, r = 0.05), which plays the warm-up's part.

BatchNorm statistics: averaging running means and variances of different weights does not give the
statistics of the averaged weights, so the buffers (running mean/var, batch counts) are *copied* from G
at every update rather than averaged.  Sampling in ganforge uses batch statistics by default
(``ganforge.sampling.generate(bn_mode='batch')``), which are the averaged network's own; its running
statistics are G's, not its own, so to sample in eval mode use ``bn_mode='standing'``, which measures
them on batches of latents first.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ganforge.config import EMAConfig


class GeneratorEMA:
    def __init__(self, G: nn.Module, cfg: EMAConfig, images_per_step: int = 1):
        self.decay, self.start_step, self.warmup = cfg.decay, cfg.start_step, cfg.warmup
        self.half_life, self.rampup, self.images_per_step = cfg.half_life_images, cfg.rampup, images_per_step
        self.model = copy.deepcopy(G)
        self.model.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        if step <= self.start_step:
            return 0.0  # copy
        if self.half_life:
            half_life = float(self.half_life)
            if self.rampup:
                half_life = min(half_life, (step - self.start_step) * self.images_per_step * self.rampup)
            return 0.5 ** (self.images_per_step / max(half_life, 1e-8))
        if not self.warmup:
            return self.decay
        t = step - self.start_step
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, G: nn.Module, step: int) -> None:
        """Fold G's weights after generator step ``step`` (1 for the first) into the average."""
        weight = 1.0 - self.decay_at(step)  # how far the average moves towards G
        averaged = [p for p in self.model.parameters()]
        current = [p.detach() for p in G.parameters()]
        if weight == 1.0:
            torch._foreach_copy_(averaged, current)
        else:
            torch._foreach_lerp_(averaged, current, weight)
        for b_avg, b in zip(self.model.buffers(), G.buffers()):
            b_avg.copy_(b)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
