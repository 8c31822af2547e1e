"""What a run does besides training, as callbacks of the loop (see Trainer.fit).

A callback is any object with some of ``on_start(trainer)``, ``on_step(trainer, step)`` (after every
generator step; keys it puts in ``trainer.log_extra`` join that step's metrics line), ``on_log(trainer,
record)``, ``on_epoch_end(trainer, epoch)`` and ``on_end(trainer)``.
"""
from __future__ import annotations

from ganforge.config import Config


def default_callbacks(cfg: Config, trainer) -> list:
    from ganforge.training.diagnostics import Diagnostics

    callbacks: list = [Diagnostics()]
    if cfg.eval.every > 0:  # scores every eval.every steps and keeps the best checkpoint
        from ganforge.metrics.callback import EvalCallback
        callbacks.append(EvalCallback(cfg))
    if cfg.train.report:  # first: its on_start writes real_samples.png, which TensorBoard logs too
        from ganforge.reporting.callbacks import ReportCallback
        callbacks.append(ReportCallback(trainer.run_dir))
    if cfg.train.tensorboard:
        from ganforge.reporting.tensorboard import TensorBoardCallback
        callbacks.append(TensorBoardCallback(trainer.run_dir))
    return callbacks
