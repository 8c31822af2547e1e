"""When the training loop does what: log, sample, save mid-epoch, check the guard, stop for the time budget.

:class:`LoopSchedule` answers each question for the step just trained, from ``train.*`` and
``eval.every``; the loop (:meth:`ganforge.training.trainer.Trainer.fit`) only asks.  Decisions that
depend on a clock (``train.midsave_minutes``, ``train.save_every_minutes``, ``train.max_minutes``)
differ between the processes of a multi-GPU run, so they are agreed across ranks here (one small
all-reduce each, see :mod:`ganforge.training.distributed`); every rank asks the same questions at the
same steps.
(The learning-rate schedules are :mod:`ganforge.training.schedules`.)
"""
from __future__ import annotations

import time

from ganforge.config import Config
from ganforge.training import distributed


class LoopSchedule:
    def __init__(self, cfg: Config, batches_per_epoch: int, world_size: int = 1):
        self.train, self.eval_every = cfg.train, cfg.eval.every
        self.batches_per_epoch, self.world_size = batches_per_epoch, world_size
        self.steps_per_epoch = batches_per_epoch // cfg.train.d_steps
        self.total_steps = cfg.train.max_steps or self.steps_per_epoch * cfg.train.epochs
        self.last_save = time.monotonic()

    def finished(self, step: int) -> bool:
        return step >= self.total_steps

    def epoch_over(self, batch: int) -> bool:
        """No full group of ``train.d_steps`` batches is left in this epoch."""
        return batch + self.train.d_steps > self.batches_per_epoch

    def log_due(self, step: int, extra: dict) -> bool:
        """A metrics line: every ``train.log_every`` steps, at the last step, and when a callback added keys."""
        return bool(extra) or step % self.train.log_every == 0 or step == self.total_steps

    def sample_due(self, step: int) -> bool:
        return bool(self.train.sample_every) and step % self.train.sample_every == 0

    def midsave_due(self, step: int) -> bool:
        """``train.midsave_steps`` / ``train.midsave_minutes`` (since the last checkpoint) have passed."""
        t = self.train
        by_steps = t.midsave_steps and step % t.midsave_steps == 0
        by_time = t.midsave_minutes and time.monotonic() - self.last_save >= t.midsave_minutes * 60
        if t.midsave_minutes and self.world_size > 1:
            by_time = distributed.any_rank(bool(by_time))  # clocks differ: all ranks save together
        return bool(by_steps or by_time)

    def epoch_end_save_due(self, step: int, last: bool) -> bool:
        """Whether this epoch end writes its grid and checkpoint and calls ``on_epoch_end`` (the report's
        refresh): at every one, or with ``train.save_every_minutes`` only once that long has passed since
        the last checkpoint; the ``last`` epoch end of a run (finished, out of time, stopped) always."""
        minutes = self.train.save_every_minutes
        if not minutes:
            return True
        due = last or self.finished(step) or time.monotonic() - self.last_save >= minutes * 60
        if self.world_size > 1:
            due = distributed.any_rank(due)  # clocks differ: all ranks save together
        return due

    def saved(self) -> None:
        """A checkpoint was just written (the mid-run save by time counts from here)."""
        self.last_save = time.monotonic()

    def guard_check_due(self, step: int, batch: int) -> bool:
        """At every log line and before anything is saved: a bad state is never checkpointed."""
        t = self.train
        return (step % t.log_every == 0 or step >= self.total_steps or self.midsave_due(step)
                or bool(self.eval_every and step % self.eval_every == 0) or self.epoch_over(batch))

    def pace_due(self, step: int) -> bool:
        """With ``train.max_minutes``: at each log line's step, the learning-rate schedules re-estimate the
        run's length from the pace so far (:meth:`ganforge.training.schedules.LRSchedules.pace`)."""
        return bool(self.train.max_minutes) and step % self.train.log_every == 0

    def agreed_seconds(self, trained_seconds: float) -> float:
        """The training time so far, the same on every rank: the slowest rank's (one small all-reduce)."""
        if self.world_size == 1:
            return trained_seconds
        return distributed.max_over_ranks(round(trained_seconds * 1000)) / 1000

    def out_of_time(self, step: int, trained_seconds: float) -> bool:
        """``train.max_minutes`` of training time (summed across resumes) are spent."""
        budget = self.train.max_minutes * 60
        over = bool(budget) and trained_seconds >= budget
        if budget and self.world_size > 1:
            # Each rank's clock says something else: the ranks agree (one small all-reduce, with a host
            # sync, so only at each log line's step, as StopSignals.check does) and stop after the same step.
            if step % self.train.log_every:
                return False
            over = distributed.any_rank(over)
        return over
