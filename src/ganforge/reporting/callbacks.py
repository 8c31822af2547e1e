"""The report's part of a training run (``train.report``, on by default).

- at the start: ``real_samples.png``, a grid of real training images as the loader prepares them;
- at every epoch end: ``report.html`` refreshed (curves included), so a reloaded browser tab shows progress;
- at the end: ``curves.png``, ``timeline.gif`` (+ ``timeline.mp4`` when ffmpeg is installed) and the
  final ``report.html``.

Only the main process of a multi-GPU run writes them.

The epoch-end refresh re-reads the run directory and re-plots the curves: about a tenth of a second
(see docs/reporting.md), small next to an epoch.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ganforge.reporting.curves import write_curves
from ganforge.reporting.html import write_report
from ganforge.reporting.rundata import load_run
from ganforge.reporting.timeline import write_timeline
from ganforge.sampling import save_grid


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
            "python": __import__("sys").version.split()[0], "torch": torch.__version__}


class ReportCallback:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_start(self, trainer) -> None:
        if not trainer.is_main:
            return
        path = self.run_dir / "real_samples.png"
        if not path.is_file():  # a resumed run keeps the grid it started with
            write_real_samples(trainer.loader.dataset, path, trainer.cfg.train.n_fixed_noise, trainer.cfg.train.seed)

    def on_epoch_end(self, trainer, epoch: int) -> None:
        if trainer.is_main:
            write_report(self.run_dir, live=live_summary(trainer))

    def on_end(self, trainer) -> None:
        if not trainer.is_main:
            return
        run = load_run(self.run_dir)
        write_timeline(self.run_dir, run.sample_grids())
        write_curves(run.records, self.run_dir / "curves.png")
        write_report(self.run_dir)
