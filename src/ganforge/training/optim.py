"""Optimisers and learning-rate schedules, one per network (two time-scale updates)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ganforge.config import OptimConfig


def build_optimizer(module: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    # foreach: one kernel launch per group of tensors instead of one per parameter.
    if cfg.name in ("adam", "adamw"):
        # L2 weight decay is decoupled from the gradient (AdamW); plain Adam's coupled L2 would be
        # rescaled by the adaptive step and act unevenly across weights.
        cls = torch.optim.AdamW if cfg.weight_decay > 0 or cfg.name == "adamw" else torch.optim.Adam
        return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, foreach=True)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.betas[0], weight_decay=cfg.weight_decay, foreach=True)
