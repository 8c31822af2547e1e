"""The report's part of a training run (``train.report``, on by default).

- at the start: ``real_samples.png``, a grid of real training images as the loader prepares them;
- at every epoch end, and whenever a ``train.sample_every`` grid is written: ``report.html`` refreshed,
  so a reloaded browser tab shows the run as it is, the newest grid included;
- at the end: ``curves.png``, ``timeline.gif`` (+ ``timeline.mp4`` when ffmpeg is installed) and the
  final ``report.html``.

Plotting the curves is the one slow part of a refresh (matplotlib: a fraction of a second, more on a
busy machine), so during training they are re-plotted only when that keeps the report's share of the
time under about a tenth; the page says which step its curves reach.  Only the main process of a
multi-GPU run writes any of this.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ganforge.reporting.html import Curves, plot, write_report
from ganforge.reporting.rundata import load_run
from ganforge.reporting.timeline import write_timeline
from ganforge.sampling import save_grid
from ganforge.storage import atomic_write_bytes

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


def live_summary(trainer) -> dict:
    """What summary.json will say, while the run is still going (the trainer writes that file at the end)."""
    from ganforge.training.trainer import hardware_description

    return {"status": "running", "step": trainer.progress.step, "epoch": trainer.progress.epoch,
            "images": trainer.loader.num_images if trainer.loader is not None else None,
            "images_seen": trainer.progress.images_seen,
            "skipped_images": getattr(trainer, "data_error_count", 0),
            "train_seconds": trainer.progress.elapsed, "device": str(trainer.device),
            "hardware": hardware_description(trainer.device),
            "python": sys.version.split()[0], "torch": torch.__version__}


def finish(run_dir: Path) -> list[Path]:
    """The end-of-run artefacts: curves.png, the timeline, report.html (``ganforge report`` runs this too)."""
    run = load_run(run_dir)
    curves = plot(run)
    written = []
    if curves.png:
        atomic_write_bytes(run.path / "curves.png", curves.png)
        written.append(run.path / "curves.png")
    written += write_timeline(run.path, run.sample_grids())
    written.append(write_report(run.path, curves=curves))
    return written


class ReportCallback:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.curves: Curves | None = None
        self.next_plot = 0.0  # time.monotonic() after which the curves are re-plotted

    def on_start(self, trainer) -> None:
        if not trainer.is_main:
            return
        path = self.run_dir / "real_samples.png"
        if not path.is_file():  # a resumed run keeps the grid it started with
            write_real_samples(trainer.loader.dataset, path, trainer.cfg.train.n_fixed_noise, trainer.cfg.train.seed)

    def on_samples(self, trainer, path: Path) -> None:
        """A ``train.sample_every`` grid was just written: refresh the page so it shows up (live preview).

        Epoch grids are left to ``on_epoch_end``, which follows at once.  The page is always rewritten
        (re-reading the run and inlining its grids takes milliseconds); the curves in it are re-plotted
        only as often as at epoch ends (see ``REPLOT_AFTER``), plotting being the slow part."""
        if not trainer.is_main or Path(path).name.startswith("epoch_"):
            return
        write_report(self.run_dir, live=live_summary(trainer), curves=self._curves(time.monotonic()))

    def _curves(self, now: float) -> Curves:
        if self.curves is None or now >= self.next_plot:
            self.curves = plot(load_run(self.run_dir))
            took = time.monotonic() - now
            self.next_plot = now + took * REPLOT_AFTER
        return self.curves

    def on_epoch_end(self, trainer, epoch: int) -> None:
        if not trainer.is_main:
            return
        write_report(self.run_dir, live=live_summary(trainer), curves=self._curves(time.monotonic()))

    def on_end(self, trainer) -> None:
        if trainer.is_main:
            finish(self.run_dir)
