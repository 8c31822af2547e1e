"""One GAN training step: k discriminator updates, then one generator update.

This is the tutorial's algorithm (pytorch/examples dcgan/main.py), with every strategy a piece that
it calls rather than a branch inside it:

- ``conditions`` what G and D condition on (nothing; the real batch's classes),
- ``targets``   what D's loss aims at for reals and fakes (label smoothing / flipping),
- ``d_input``   what D sees of an image (instance noise, differentiable augmentation),
- ``loss``      the GAN loss on logits,
- ``penalties`` extra terms of D's loss (R1, R2, gradient penalty, LeCam, FastGAN's reconstruction),
- ``g_terms``   extra terms of G's loss (feature matching on a frozen ImageNet network),
- ``regularise`` L1 weight penalties added to each network's loss,
- ``latents``   how the step draws z (``randn``; in blocks of a few latent groups with
                ``model.latent_groups``, so each group's share of a batch can be measured).

Nothing here calls ``.item()``: the step returns detached tensors and the loop syncs with the host
only when it logs.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from ganforge.training.losses import Loss
from ganforge.training.speed import LossScaling
from ganforge.training.strategies import Conditions, DInput, GTerm, Penalty, Targets


def l1_penalty(module: nn.Module, strength: float) -> torch.Tensor | None:
    if strength <= 0:
        return None
    return strength * sum(p.abs().sum() for p in module.parameters() if p.requires_grad)


def grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients together, as a device tensor (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


@dataclass
class GANStep:
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    loss: Loss
    nz: int
    targets: Targets
    d_input: DInput = field(default_factory=DInput)
    penalties: list[Penalty] = field(default_factory=list)
    g_terms: list[GTerm] = field(default_factory=list)
    l1_g: float = 0.0
    l1_d: float = 0.0
    conditions: Conditions = field(default_factory=Conditions)
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    # How each loss becomes gradients and an update (fp16 sets a GradScaler per network; see speed.py).
    scaling_d: LossScaling = field(default_factory=LossScaling)
    scaling_g: LossScaling = field(default_factory=LossScaling)
    # How z is drawn: (n, device) -> latents.  None: standard normal.
    latents: Callable[[int, torch.device], torch.Tensor] | None = None
    # D as the generator step runs it: the same weights, but outside DistributedDataParallel, whose
    # gradient sync would wait for D gradients that the G step never computes.  None: ``D``.
    D_for_g: nn.Module | None = None

    def __post_init__(self):
        self.g_params = [p for p in self.G.parameters() if p.requires_grad]
        self.d_params = [p for p in self.D.parameters() if p.requires_grad]
        if self.D_for_g is None:
            self.D_for_g = self.D

    def sample_z(self, n: int, device: torch.device) -> torch.Tensor:
        """``n`` latents for a batch of fakes."""
        if self.latents is not None:
            return self.latents(n, device)
        return torch.randn(n, self.nz, device=device)

    @staticmethod
    def _add(total: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        return total if extra is None else total + extra

    def d_step(self, real: torch.Tensor, labels: torch.Tensor, step: int, d_index: int, keep_fake: bool):
        """Update D on one real batch and one fake batch: maximise log D(x) + log(1 - D(G(z))).
        ``d_index``: discriminator steps done before this one (lazy penalties count them)."""
        z = self.sample_z(real.shape[0], real.device)
        y, d_labels = self.conditions(labels, z)
        with self.autocast(), torch.set_grad_enabled(keep_fake):
            fake = self.G(z, y)  # kept with its graph on the last D step: the G step reuses it (and its z)
        with self.autocast():
            real_in, fake_in = self.d_input(real, step), self.d_input(fake.detach(), step)
            real_logits = self.D(real_in, d_labels.real).float()
            fake_logits = self.D(fake_in, d_labels.fake).float()
            real_target, fake_target = self.targets(real.shape[0], real.device)
            loss_d = self.loss.d_loss(real_logits, fake_logits, real_target, fake_target)
            for penalty in self.penalties:
                loss_d = self._add(loss_d, penalty(self.D, real_in, fake_in, d_labels, d_index, real_logits, fake_logits))
            loss_d = self._add(loss_d, l1_penalty(self.D, self.l1_d))
        self.opt_d.zero_grad(set_to_none=True)
        self.scaling_d.backward(loss_d)
        self.scaling_d.unscale(self.opt_d)
        grad_norm_d = grad_norm(self.d_params)
        self.scaling_d.step(self.opt_d)
        self.d_input.observe(real_logits.detach())
        return (fake, z), loss_d.detach(), real_logits.detach(), fake_logits.detach(), grad_norm_d

    def g_step(self, fake: torch.Tensor, z: torch.Tensor, real: torch.Tensor, labels: torch.Tensor, step: int):
        """Update G: maximise log D(G(z)) on the fakes of the last D step (made from ``z``), through the
        updated D."""
        _, d_labels = self.conditions(labels, z)
        with self.autocast():
            fake_logits = self.D_for_g(self.d_input(fake, step), d_labels.fake).float()
            real_logits = None
            if self.loss.needs_real_logits_for_g:
                with torch.no_grad():  # a reference for G's loss: nothing flows back through it
                    real_logits = self.D_for_g(self.d_input(real, step), d_labels.real).float()
            loss_g = self.with_g_terms(self.loss.g_loss(fake_logits, real_logits), step, fake, z)
        grad_norm_g = self.update_g(loss_g)
        return loss_g.detach(), fake_logits.detach(), grad_norm_g

    def with_g_terms(self, loss_g: torch.Tensor, step: int, fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """G's loss with its extra terms (feature matching's) and its L1 weight penalty added; ``fake``:
        the step's batch of samples, with its graph, and ``z`` its latents."""
        for term in self.g_terms:
            loss_g = self._add(loss_g, term(self.G, step, fake, z))
        return self._add(loss_g, l1_penalty(self.G, self.l1_g))

    def update_g(self, loss_g: torch.Tensor) -> torch.Tensor:
        """One optimiser step of G on ``loss_g``; the gradient norm before it."""
        self.opt_g.zero_grad(set_to_none=True)
        # Gradients for G only: D's parameters are left alone without toggling requires_grad.
        self.scaling_g.backward(loss_g, inputs=self.g_params)
        self.scaling_g.unscale(self.opt_g)
        grad_norm_g = grad_norm(self.g_params)
        self.scaling_g.step(self.opt_g)
        return grad_norm_g

    def term_readings(self) -> dict[str, torch.Tensor]:
        return {k: v for term in self.g_terms for k, v in term.log().items()}

    def __call__(self, batches: list[tuple[torch.Tensor, torch.Tensor]], step: int) -> dict[str, torch.Tensor]:
        """``batches``: one fresh real batch per discriminator step (``train.d_steps`` of them)."""
        for i, (real, labels) in enumerate(batches):
            (fake, z), loss_d, real_logits, fake_logits_d, grad_norm_d = self.d_step(
                real, labels, step, d_index=step * len(batches) + i, keep_fake=i == len(batches) - 1)
        loss_g, fake_logits_g, grad_norm_g = self.g_step(fake, z, real, labels, step)
        reading = self.loss.reading  # probabilities for BCE-type losses, raw scores for hinge/wgan/lsgan
        return {
            **self.term_readings(),
            "loss_d": loss_d,
            "loss_g": loss_g,
            "d_x": reading(real_logits).mean(),
            "d_g_z": reading(fake_logits_d).mean(),  # D(G(z)) before D's update, as the tutorial logs
            "d_g_z2": reading(fake_logits_g).mean(),  # and after it
            "grad_norm_d": grad_norm_d,  # of D's last step, before the optimiser applies it
            "grad_norm_g": grad_norm_g,
            "d_wins": self.loss.d_wins(real_logits, fake_logits_d),  # 1 when D separated the batch completely
        }
