"""One preflight: every check of a new run's config and environment, before its run directory exists.

:func:`preflight` runs, in this order, and raises the first :class:`~ganforge.config.ConfigError` it
meets, so a run whose settings cannot work leaves nothing on disk:

1. the config: :func:`ganforge.config.validate` (types, ranges, combinations);
2. the builders' checks, without building anything heavy: the architecture (:func:`ganforge.nets.check`),
   the loss, label targets, D-input transforms (augmentation, instance noise), penalties, optimisers
   and learning-rate schedules;
3. the speed switches (``train.amp``, ``compile``, ``channels_last``, ``cuda_graphs``) on this device;
4. in-training evaluation (``eval.every > 0``): the eval config, and what it will need at its first
   evaluation: the optional extra of the feature extractor and, for Inception, its weights file.

The data is checked when the trainer opens it (:func:`open_data`: the source, its files decoding,
``data.channels`` against the images), before the first step; ``ganforge train --dry-run`` opens it here
to say what it found.  This module wires the metrics' checks into training's start, so it sits with the
session, above both.
"""
from __future__ import annotations

import torch

from ganforge import nets
from ganforge.config import Config, ConfigError, validate
from ganforge.data import BatchLoader, build_loader
from ganforge.data.channel_check import check_channels
from ganforge.devices import pick_device
from ganforge.metrics.evaluate import check_eval_config
from ganforge.metrics.features import check_available
from ganforge.training import speed
from ganforge.training.build import (build_d_input, build_loss, build_lr_schedules, build_optimizer,
                                     build_g_terms, build_penalties, build_targets)
from ganforge.training.signals import ignore_stop_signals


#: Counts no real run comes near (the presets use batches up to 10,000 and 64 fixed latents): a value
#: beyond is a typo, refused before anything is allocated or written.
LIMITS = {"data.batch_size": 2**20, "train.n_fixed_noise": 4096, "model.nz": 2**16, "model.ngf": 2**14,
          "model.ndf": 2**14}
#: Parameters of G and D together (4 GB each in fp32, before Adam's two copies): the largest preset has 38M.
MAX_PARAMETERS = 10**9


def check_sizes(cfg: Config) -> None:
    """Counts and model widths that would exhaust memory (model.nz=10000000): a ConfigError naming them,
    where building the models would fail mid-start with an allocation error.  The networks are built on
    PyTorch's meta device, which allocates nothing, to count their parameters."""
    for key, limit in LIMITS.items():
        if cfg.get(key) > limit:
            raise ConfigError(f"{key}={cfg.get(key)} is far beyond any run's (at most {limit}); give a smaller value")
    try:
        with torch.device("meta"):
            G, D = nets.build(cfg)
        count = sum(p.numel() for m in (G, D) for p in m.parameters())
    except RuntimeError:  # "Storage size calculation overflowed": beyond any count
        count = float("inf")
    if count > MAX_PARAMETERS:
        raise ConfigError(f"model.nz={cfg.model.nz}, model.ngf={cfg.model.ngf}, model.ndf={cfg.model.ndf} make "
                          f"networks of {count / 1e9:.3g} billion parameters, beyond {MAX_PARAMETERS / 1e9:g} billion "
                          "(the largest preset has 0.04 billion): give smaller widths")


def preflight(cfg: Config) -> None:
    """The config, the builders, the speed switches and evaluation, in that order (no data is read)."""
    validate(cfg)
    nets.check(cfg)
    check_sizes(cfg)
    build_loss(cfg)
    build_targets(cfg)
    build_d_input(cfg)
    build_penalties(cfg)
    build_g_terms(cfg)
    probe = torch.nn.Linear(1, 1)  # the optimisers' and schedules' checks need parameters, not the networks
    build_lr_schedules(cfg, build_optimizer(probe, cfg.optim.g), build_optimizer(probe, cfg.optim.d))
    speed.resolve(cfg.train, pick_device(cfg.train.device))
    if cfg.eval.every > 0:
        check_eval_config(cfg)
        check_available(cfg.eval.features, cfg.eval.inception_weights)


def open_data(cfg: Config, rank: int = 0, world_size: int = 1) -> BatchLoader:
    """The run's loader, its source checked (files decode, channels match the images), as the trainer opens it."""
    loader = build_loader(cfg, pick_device(cfg.train.device), rank, world_size, worker_init=ignore_stop_signals)
    check_channels(loader.dataset, cfg)
    return loader


