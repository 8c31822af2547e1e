"""Learning-rate schedules, one per network (``optim.g.schedule``, ``optim.d.schedule``).

The learning rate after ``s`` of ``T`` generator steps is ``optim.<net>.lr * factor(s / T)``:

- ``constant``: 1 (the tutorial's, and the usual choice for GANs);
- ``linear``: ``1 - s / T``, down to zero at the end (BigGAN-style fine-tuning, pix2pix);
- ``cosine``: ``(1 + cos(pi s / T)) / 2``, a gentle start and finish.

``T`` is the run's length in generator steps (``train.max_steps``, or the steps of ``train.epochs``).
Each schedule is a :class:`torch.optim.lr_scheduler.LambdaLR`, stepped once per generator step (also
for D, whose k steps per generator step share one learning rate).  The divergence guard lowers the
rates through :meth:`LRSchedules.scale`, which survives checkpoints.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch.optim.lr_scheduler import LambdaLR

from ganforge.config import Config, ConfigError

SCHEDULES = {
    "constant": lambda frac: 1.0,
    "linear": lambda frac: 1.0 - frac,
    "cosine": lambda frac: 0.5 * (1.0 + math.cos(math.pi * frac)),
}


class LRSchedules:
    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], kinds: dict[str, str]):
        for net, kind in kinds.items():
            if kind not in SCHEDULES:
                raise ConfigError(f"optim.{net}.schedule={kind!r} is not one of {', '.join(SCHEDULES)}")
        self.total_steps = 0  # set by the trainer once it knows the run's length
        self.kinds = kinds
        self.schedulers = {net: LambdaLR(opt, self._factor(kinds[net])) for net, opt in optimizers.items()}

    def _factor(self, kind: str):
        shape = SCHEDULES[kind]

        def factor(step: int) -> float:
            frac = min(step / self.total_steps, 1.0) if self.total_steps else 0.0
            return shape(frac)
        return factor

    def step(self) -> None:
        # Both schedules count generator steps, so D's advances in steps where D did not train (the
        # G-only steps of loss.imle_warmup); torch warns about exactly that order, which is intended here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for sched in self.schedulers.values():
                sched.step()

    def scale(self, factor: float) -> None:
        """Multiply every learning rate, now and for the rest of the run, by ``factor``."""
        for sched in self.schedulers.values():
            sched.base_lrs = [lr * factor for lr in sched.base_lrs]
            for group, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
                group["lr"] = base * fn(sched.last_epoch)
            sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]

    def lr(self, net: str) -> float:
        return self.schedulers[net].optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {net: {"base_lrs": list(s.base_lrs), "last_epoch": s.last_epoch} for net, s in self.schedulers.items()}

    def load_state_dict(self, state: dict) -> None:
        for net, s in self.schedulers.items():
            if net in state:
                s.base_lrs = [float(v) for v in state[net]["base_lrs"]]
                s.last_epoch = int(state[net]["last_epoch"])
                s._last_lr = [g["lr"] for g in s.optimizer.param_groups]


def build_lr_schedules(cfg: Config, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> LRSchedules:
    return LRSchedules({"g": opt_g, "d": opt_d}, {"g": cfg.optim.g.schedule, "d": cfg.optim.d.schedule})
