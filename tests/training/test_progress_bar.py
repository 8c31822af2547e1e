"""The terminal's progress bar, read from a real `ganforge train` run's output."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

TINY = ["--preset", "quickstart", "data.channels=3", "data.batch_size=16", "data.num_workers=0", "model.ngf=8",
        "model.ndf=8", "model.nz=16", "train.n_fixed_noise=16", "train.log_every=2", "train.tensorboard=false",
        "train.report=false", "train.device=cpu", "data.limit=0", "train.epochs=1000", "train.compile=off"]


def _train(image_folder, tmp_path, *overrides: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ganforge", "train", "--data", str(image_folder), "--runs-dir",
                           str(tmp_path / "runs"), *TINY, *overrides],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, COLUMNS="160"))
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


@pytest.mark.slow  # a real `ganforge train` of 6 s of training: about 20 s with its start on 2 busy cores
def test_a_time_budgeted_run_counts_minutes_to_its_budget(image_folder, tmp_path):
    bar = _train(image_folder, tmp_path, "train.max_minutes=0.1")
    shown = re.findall(r"(\d+\.\d\d)/0\.1 min \[", bar)
    assert shown, bar[-1500:]
    minutes = [float(m) for m in shown]
    assert minutes == sorted(minutes) and minutes[-1] >= 0.1  # counts up to the budget, and reaches it
    assert "step/s" not in bar and re.search(r"step \d+, ep 1 D", bar)  # the step is in the text beside it
    # 1,000 epochs allow tens of thousands of steps: a bar of steps would stop at a few percent.
    assert not re.search(r"/\d{4,}", bar)


def test_without_a_budget_the_bar_counts_steps_and_a_rollback_moves_it_back():
    from ganforge.training.progress_bar import ProgressBar

    bar = ProgressBar(total_steps=500, step=100, max_minutes=0, trained_seconds=30.0, disable=False)
    assert (bar.total, bar.unit, bar.bar.n) == (500, "step", 100)
    bar.update(140, 42.0)
    bar.rolled_back(120)
    assert bar.bar.n == 120
    timed = ProgressBar(total_steps=500, step=100, max_minutes=3, trained_seconds=30.0, disable=False)
    assert (timed.total, timed.unit, timed.bar.n) == (3, "min", 0.5)  # a resumed run starts at its time so far
    timed.update(140, 300.0)
    timed.rolled_back(120)
    assert timed.bar.n == 3  # capped at the budget; time spent stays spent
    bar.close()
    timed.close()
