"""The report's part of a training run (``train.report``, on by default).

- at the start: ``real_samples.png``, a grid of real training images as the loader prepares them;
- at every epoch end, and whenever a ``train.sample_every`` grid is written: ``report.html`` refreshed,
  so a reloaded browser tab shows the run as it is, the newest grid included;
- at the end: ``curves.png``, ``timeline.gif`` (+ ``timeline.mp4`` when ffmpeg is installed) and the
  final ``report.html`` (:func:`ganforge.reporting.html.finish`, which ``ganforge report`` runs too).

Plotting the curves is the one slow part of a refresh (matplotlib: a fraction of a second, more on a
busy machine), so during training they are re-plotted only when that keeps the report's share of the
time under about a tenth; the page says which step its curves reach.  Only the main process of a
multi-GPU run writes any of this.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ganforge.reporting.html import Curves, finish, plot, write_report
from ganforge.reporting.rundata import load_run
from ganforge.runfiles import RunDir
from ganforge.sampling import save_grid
from ganforge.training.context import RunContext

#: Re-plot the curves only after this many times the last plot's duration has passed.
REPLOT_AFTER = 10


def write_real_samples(dataset, path: Path, n: int = 64, seed: int = 0) -> Path | None:
    """A grid of ``n`` real images drawn at random (seeded) from ``dataset``, without touching the loader.

    Items are ``(uint8 C x S x S, label, bad)``; a random draw rather than the first files, because a
    folder sorted by class would otherwise show one class only.
    """
    count = min(n, len(dataset))
    if count == 0:
        return None
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    images = torch.stack([dataset[int(i)][0] for i in order]).float().div(127.5).sub(1.0)
    return save_grid(images, path)


class ReportCallback:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.curves: Curves | None = None
        self.next_plot = 0.0  # time.monotonic() after which the curves are re-plotted

    def on_start(self, run: RunContext) -> None:
        if not run.is_main:
            return
        path = self.run_dir / RunDir.REAL_SAMPLES
        if not path.is_file():  # a resumed run keeps the grid it started with
            write_real_samples(run.dataset, path, run.cfg.train.n_fixed_noise, run.cfg.train.seed)

    def on_samples(self, run: RunContext, path: Path) -> None:
        """A ``train.sample_every`` grid was just written: refresh the page so it shows up (live preview).

        Epoch grids are left to ``on_epoch_end``, which follows at once.  The page is always rewritten
        (re-reading the run and inlining its grids takes milliseconds); the curves in it are re-plotted
        only as often as at epoch ends (see ``REPLOT_AFTER``), plotting being the slow part."""
        if not run.is_main or Path(path).name.startswith("epoch_"):
            return
        write_report(self.run_dir, live=run.summary("running"), curves=self._curves(time.monotonic()))

    def _curves(self, now: float) -> Curves:
        if self.curves is None or now >= self.next_plot:
            self.curves = plot(load_run(self.run_dir))
            took = time.monotonic() - now
            self.next_plot = now + took * REPLOT_AFTER
        return self.curves

    def on_epoch_end(self, run: RunContext, epoch: int) -> None:
        if not run.is_main:
            return
        write_report(self.run_dir, live=run.summary("running"), curves=self._curves(time.monotonic()))

    def on_end(self, run: RunContext) -> None:
        if run.is_main:
            finish(self.run_dir)
