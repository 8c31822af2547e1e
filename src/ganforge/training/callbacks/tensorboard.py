"""TensorBoard events of a training run (``train.tensorboard``, on by default).

Every number the trainer logs becomes a scalar, grouped by kind (``loss/``, ``D/``, ``lr/``, ``grad/``,
``speed/``, ``metrics/``), so keys added later (gradient norms, FID, ADA's p) show up without changes
here.  Every fixed-noise grid is logged as it is written (epoch ends, and every ``train.sample_every``
steps), as one image series with a step slider.
"""
from __future__ import annotations

from pathlib import Path

from ganforge.reporting.rundata import POSITION_KEYS
from ganforge.reporting.tensorboard import read_rgb, tag
from ganforge.runfiles import RunDir
from ganforge.training.context import RunContext


class TensorBoardCallback:
    def __init__(self, run_dir: Path):
        self.log_dir = RunDir(run_dir).tensorboard
        self.writer = None

    def on_start(self, run: RunContext) -> None:
        if not run.is_main:  # only the main process of a multi-GPU run logs
            return
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: after a resume, events past the checkpoint (logged before a crash) are discarded,
        # so the curves do not double back on themselves.
        step = run.progress.step
        self.writer = SummaryWriter(self.log_dir, purge_step=step if step else None)
        real = run.run_dir / RunDir.REAL_SAMPLES
        if step == 0 and real.is_file():
            self.writer.add_image("samples/real", read_rgb(real), 0, dataformats="HWC")

    def on_log(self, run: RunContext, record: dict) -> None:
        if self.writer is None:
            return
        step = record["step"]
        for key, value in record.items():
            if key not in POSITION_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag(key), value, step)

    def on_samples(self, run: RunContext, path: Path) -> None:
        """Every fixed-noise grid as it is written (epoch ends and ``train.sample_every``), at its step."""
        if self.writer is None:
            return
        self.writer.add_image("samples/fixed_noise", read_rgb(path), run.progress.step, dataformats="HWC")
        self.writer.flush()

    def on_epoch_end(self, run: RunContext, epoch: int) -> None:
        if self.writer is not None:
            self.writer.flush()

    def on_end(self, run: RunContext) -> None:
        if self.writer is not None:
            self.writer.close()
