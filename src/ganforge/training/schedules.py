"""Learning-rate schedules, one per network (``optim.g.schedule``, ``optim.d.schedule``).

The learning rate after ``s`` of ``T`` generator steps is ``optim.<net>.lr * factor(s / T)``:

- ``constant``: 1 (the tutorial's, and the usual choice for GANs);
- ``linear``: ``1 - s / T``, down to zero at the end (BigGAN-style fine-tuning, pix2pix);
- ``cosine``: ``(1 + cos(pi s / T)) / 2``, a gentle start and finish.

``T`` is the run's length in generator steps: ``train.max_steps``, or the steps of ``train.epochs``, or,
with a time budget (``train.max_minutes``), the steps the budget holds at the pace so far, whichever is
shortest.  The pace is re-estimated at every log line (:meth:`LRSchedules.pace`, from the training time
the ranks agree on), so ``linear`` and ``cosine`` end at the budget however fast the machine is.
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
    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], kinds: dict[str, str],
                 budget_seconds: float = 0.0):
        for net, kind in kinds.items():
            if kind not in SCHEDULES:
                raise ConfigError(f"optim.{net}.schedule={kind!r} is not one of {', '.join(SCHEDULES)}")
        self.total_steps = 0  # set by the trainer once it knows the run's length in steps
        self.budget_seconds = budget_seconds  # train.max_minutes, in seconds (0: no time budget)
        self.paced_steps = 0  # with a time budget: the steps it holds at the pace so far (0: not yet known)
        self.kinds = kinds
        self.schedulers = {net: LambdaLR(opt, self._factor(kinds[net])) for net, opt in optimizers.items()}

    @property
    def length(self) -> int:
        """The run's length in generator steps as far as it is known (0: unknown, the rate stays at its start)."""
        known = [n for n in (self.total_steps, self.paced_steps) if n]
        return min(known) if known else 0

    def _factor(self, kind: str):
        shape = SCHEDULES[kind]

        def factor(step: int) -> float:
            length = self.length
            frac = min(step / length, 1.0) if length else 0.0
            return shape(frac)
        return factor

    def pace(self, step: int, trained_seconds: float) -> None:
        """With a time budget: the run will last about ``step * budget / trained_seconds`` steps.

        Called at log lines with the training time every rank agrees on, so every rank's rate is the same.
        """
        if self.budget_seconds and step > 0 and trained_seconds > 0:
            self.paced_steps = max(step, round(step * self.budget_seconds / trained_seconds))

    def step(self) -> None:
        # Both schedules count generator steps; torch warns when a schedule steps before its optimiser
        # has (a step the guard or the loss scaler skipped), which is intended here.
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
        state = {net: {"base_lrs": list(s.base_lrs), "last_epoch": s.last_epoch} for net, s in self.schedulers.items()}
        return {**state, "paced_steps": self.paced_steps}

    def load_state_dict(self, state: dict) -> None:
        self.paced_steps = int(state.get("paced_steps", 0))  # checkpoints before time-paced schedules: 0
        for net, s in self.schedulers.items():
            if net in state:
                s.base_lrs = [float(v) for v in state[net]["base_lrs"]]
                s.last_epoch = int(state[net]["last_epoch"])
                s._last_lr = [g["lr"] for g in s.optimizer.param_groups]


def build_lr_schedules(cfg: Config, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> LRSchedules:
    return LRSchedules({"g": opt_g, "d": opt_d}, {"g": cfg.optim.g.schedule, "d": cfg.optim.d.schedule},
                       budget_seconds=cfg.train.max_minutes * 60)
