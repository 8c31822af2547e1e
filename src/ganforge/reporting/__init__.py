"""Seeing training: TensorBoard logging, curves, the sample timeline, report.html, and run listings.

Callbacks of the training loop (registered by ``training.callbacks.default_callbacks``):
:class:`~ganforge.reporting.tensorboard.TensorBoardCallback` and
:class:`~ganforge.reporting.callbacks.ReportCallback`.  The same writers run after the fact from the
``ganforge report``, ``ganforge runs`` and ``ganforge interpolate`` commands.
"""
from ganforge.reporting.html import write_report
from ganforge.reporting.rundata import RunData, load_run

__all__ = ["RunData", "load_run", "write_report"]
