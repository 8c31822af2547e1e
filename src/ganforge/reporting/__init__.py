"""Seeing training: TensorBoard logging, curves, the sample timeline, report.html, and run listings.

Everything here reads the run directory (and writes the report's own files into it); nothing imports
training.  During a run, :mod:`ganforge.training.callbacks` calls these writers (the report's and
TensorBoard's callbacks live there); after it, the ``ganforge report``, ``ganforge runs`` and
``ganforge interpolate`` commands call the same ones.
"""
from ganforge.reporting.html import write_report
from ganforge.reporting.rundata import RunData, load_run

__all__ = ["RunData", "load_run", "write_report"]
