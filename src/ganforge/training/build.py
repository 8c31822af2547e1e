"""Building a run's training pieces from its config: every ``build_*`` function, in one module.

:func:`build_components` makes all the parts a :class:`~ganforge.training.trainer.Trainer` trains with
(the networks on their device, optimisers, the step with its strategies, schedules, EMA, guard); the
trainer takes them as given, or builds them here from its config.

The pieces themselves live where their concept does (:mod:`~ganforge.training.strategies`,
:mod:`~ganforge.training.augment`, :mod:`~ganforge.training.penalties`, :mod:`~ganforge.training.losses`,
:mod:`~ganforge.training.optim`, :mod:`~ganforge.training.schedules`); this module only reads the config
and picks them, so those modules need not know each other.  Each builder checks the config keys it
reads and raises :class:`~ganforge.config.ConfigError` naming the key: :func:`check_config` runs them
all on a config before anything is trained (the preflight).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ganforge import nets
from ganforge.config import GROUPS_PER_BATCH, Config, ConfigError
from ganforge.modules.latent_groups import GroupedLatents
from ganforge.training.augment import AdaptiveAugment, DiffAugment, Fill
from ganforge.training.ema import GeneratorEMA
from ganforge.training.guard import DivergenceGuard
from ganforge.training import feature_match
from ganforge.training.losses import build_loss
from ganforge.training.optim import build_optimizer
from ganforge.training.penalties import GradientPenalty, LeCamPenalty, R1Penalty, R2Penalty, ReconstructionLoss
from ganforge.training.schedules import LRSchedules, build_lr_schedules
from ganforge.training.step import GANStep
from ganforge.training.strategies import (ClassConditions, Conditions, DInput, DInputChain, GTerm,  # noqa: F401
                                         InstanceNoise, Penalty, build_targets)


def build_d_input(cfg: Config) -> DInput:
    if cfg.noise.anneal_steps < 0:
        raise ConfigError(f"noise.anneal_steps must be >= 0 (0: no annealing), got {cfg.noise.anneal_steps}")
    a = cfg.augment
    parts: list[DInput] = []
    if a.name != "none" and not a.policy:
        raise ConfigError(f"augment.name={a.name} with an empty augment.policy does nothing: list transforms "
                          "(color, translation, cutout) or set augment.name=none")
    fill = augment_fill(cfg)
    if a.name == "diffaugment":
        parts.append(DiffAugment(a.policy, a.p, fill))
    elif a.name == "ada":
        if a.ada_kimg <= 0:
            raise ConfigError(f"augment.ada_kimg must be > 0, got {a.ada_kimg}")
        parts.append(AdaptiveAugment(a.policy, a.p, a.ada_target, a.ada_interval, a.ada_kimg, fill))
    # Always present, so the log always says the noise level (0 when off).
    parts.append(InstanceNoise(cfg.noise.std, cfg.noise.anneal_steps))
    return DInputChain(parts)


def augment_fill(cfg: Config):
    """What translation and cutout leave where the image was (``augment.fill``), in D's [-1, 1] range.

    ``zero`` is DiffAugment's 0: mid-grey, which on a set photographed or drawn on white is a colour no
    real image has at its border, so D can tell a shifted image from its edge.  ``background`` fills
    with ``data.background`` (transparent for RGBA), ``reflect`` mirrors the image into the gap
    (cutout, which has nothing to mirror, uses the background colour)."""
    a = cfg.augment
    if a.fill == "zero":
        return Fill()
    rgb = [c / 127.5 - 1.0 for c in cfg.data.background]
    channels = cfg.data.channels
    colour = {1: [sum(rgb) / 3], 3: rgb}.get(channels, rgb + [-1.0] * (channels - 3))
    return Fill(colour=colour, reflect=a.fill == "reflect")


def build_penalties(cfg: Config) -> list[Penalty]:
    l = cfg.loss
    penalties: list[Penalty] = []
    # First, so it finds D's features of the real batch still kept from the step's forward pass.
    own_fastgan_d = cfg.model.name == "fastgan" and cfg.model.discriminator == "own"
    if own_fastgan_d and cfg.model.fastgan_decoder and l.recon != "none":
        penalties.append(ReconstructionLoss(l.recon, l.recon_weight))
    if l.r1_gamma > 0:
        penalties.append(R1Penalty(l.r1_gamma, l.r1_every))
    if l.r2_gamma > 0:
        penalties.append(R2Penalty(l.r2_gamma, l.r1_every))
    if l.name == "wgan-gp":
        penalties.append(GradientPenalty(l.gp_weight))
    if l.lecam > 0:
        penalties.append(LeCamPenalty(l.lecam))
    return penalties


def build_g_terms(cfg: Config, latents: GroupedLatents | None = None) -> list[GTerm]:
    """G's extra terms; ``latents``: the step's grouped-latent sampler, which feature matching shares
    (None: built here from ``model.latent_groups``)."""
    l = cfg.loss
    feature_match.check(cfg)
    terms: list[GTerm] = []
    if l.feature_match:
        terms.append(feature_match.FeatureMatchTerm(l.feature_match, l.feature_match_size, mirror=cfg.data.hflip > 0,
                                                    groups=latents or build_latents(cfg), gram=l.feature_match_gram,
                                                    unbiased=l.feature_match_unbiased))
    return terms


def build_conditions(cfg: Config) -> Conditions:
    """What G and D condition on: the classes (``model.num_classes``), or nothing."""
    return ClassConditions() if cfg.model.num_classes else Conditions()


def build_latents(cfg: Config) -> GroupedLatents | None:
    """How the step draws z: in blocks of latent groups with ``model.latent_groups`` (None: randn)."""
    if not cfg.model.latent_groups:
        return None
    return GroupedLatents(cfg.model.nz, cfg.model.latent_groups, GROUPS_PER_BATCH)


@dataclass
class Components:
    """The parts a run trains with; the trainer adds the data, the run directory and the loop."""
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step_fn: GANStep
    lr_schedules: LRSchedules
    ema: GeneratorEMA | None
    guard: DivergenceGuard


def build_components(cfg: Config, device: torch.device, world_size: int = 1) -> Components:
    """Every part ``cfg`` describes, G and D on ``device`` (the random initialisation draws from the
    global RNG, which the trainer seeds first)."""
    G, D = nets.build(cfg)
    G.to(device)
    D.to(device)
    opt_g = build_optimizer(G, cfg.optim.g)
    opt_d = build_optimizer(D, cfg.optim.d)
    latents = build_latents(cfg)
    step_fn = GANStep(
        G=G, D=D, opt_g=opt_g, opt_d=opt_d, loss=build_loss(cfg), nz=cfg.model.nz,
        targets=build_targets(cfg), d_input=build_d_input(cfg), penalties=build_penalties(cfg),
        g_terms=build_g_terms(cfg, latents),
        l1_g=cfg.optim.g.l1, l1_d=cfg.optim.d.l1, conditions=build_conditions(cfg), latents=latents)
    images_per_step = cfg.data.batch_size * max(world_size, 1)  # the EMA's half-life counts images
    return Components(G=G, D=D, opt_g=opt_g, opt_d=opt_d, step_fn=step_fn,
                      lr_schedules=build_lr_schedules(cfg, opt_g, opt_d),
                      ema=GeneratorEMA(G, cfg.ema, images_per_step) if cfg.ema.enabled else None,
                      guard=DivergenceGuard(cfg.guard))
