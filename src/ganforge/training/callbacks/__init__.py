"""What a run does besides training, as callbacks of the loop (the contract: :mod:`ganforge.training.context`).

This package is the wiring of a training run: it sits above :mod:`ganforge.reporting` and
:mod:`ganforge.metrics` (which know nothing of training) and attaches them to the loop:

- :class:`~ganforge.training.diagnostics.Diagnostics`: plain-words findings (always on);
- :class:`~ganforge.training.callbacks.evaluation.EvalCallback`: scores every ``eval.every`` steps and
  keeps the best checkpoint;
- :class:`~ganforge.training.callbacks.report.ReportCallback`: ``real_samples.png``, ``report.html``
  refreshed while training, the end-of-run curves and timeline (``train.report``);
- :class:`~ganforge.training.callbacks.tensorboard.TensorBoardCallback`: TensorBoard events
  (``train.tensorboard``).

Each uses only the :class:`~ganforge.training.context.RunContext` it is handed.
"""
from __future__ import annotations

from ganforge.config import Config
from ganforge.training.diagnostics import Diagnostics


def default_callbacks(cfg: Config, trainer) -> list:
    """The callbacks ``cfg`` asks for, in the order they run (``trainer``: its run directory)."""
    callbacks: list = [Diagnostics()]
    # Imported only when asked for: a run without them never loads the metrics or the report's plotting.
    if cfg.eval.every > 0:  # scores every eval.every steps and keeps the best checkpoint
        from ganforge.training.callbacks.evaluation import EvalCallback
        callbacks.append(EvalCallback(cfg))
    if cfg.train.report:  # first: its on_start writes real_samples.png, which TensorBoard logs too
        from ganforge.training.callbacks.report import ReportCallback
        callbacks.append(ReportCallback(trainer.run_dir))
    if cfg.train.tensorboard:
        from ganforge.training.callbacks.tensorboard import TensorBoardCallback
        callbacks.append(TensorBoardCallback(trainer.run_dir))
    return callbacks
