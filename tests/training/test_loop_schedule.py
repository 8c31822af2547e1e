"""When the loop logs, samples, saves, checks the guard and stops (training/loop_schedule.py)."""
from __future__ import annotations

import pytest

from ganforge.config import ConfigError
from ganforge.training.loop_schedule import LoopSchedule


def test_the_schedule_answers_from_the_config(tiny):
    cfg = tiny("unused", "train.log_every=4", "train.sample_every=3", "train.midsave_steps=5", "train.epochs=2",
               "train.d_steps=2", "eval.every=6")
    s = LoopSchedule(cfg, batches_per_epoch=21)
    assert (s.steps_per_epoch, s.total_steps) == (10, 20)
    assert [k for k in range(1, 21) if s.log_due(k, {})] == [4, 8, 12, 16, 20]
    assert s.log_due(3, {"fid": 1.0})  # a callback's key makes a log line
    assert [k for k in range(1, 13) if s.sample_due(k)] == [3, 6, 9, 12]
    assert [k for k in range(1, 16) if s.midsave_due(k)] == [5, 10, 15]
    assert not s.epoch_over(19) and s.epoch_over(20)  # 21 batches: a group of 2 fits after 19, not after 20
    # The guard is asked at each log line, before every save, at evaluations and at the epoch's end.
    assert [k for k in range(1, 10) if s.guard_check_due(k, 2 * k)] == [4, 5, 6, 8]
    assert s.guard_check_due(7, 20)  # the last group of the epoch
    assert s.finished(20) and not s.finished(19)


def test_the_time_budget_counts_training_seconds(tiny):
    s = LoopSchedule(tiny("unused", "train.max_minutes=1"), batches_per_epoch=8)
    assert not s.out_of_time(1, 59.9) and s.out_of_time(1, 60.0)
    assert not LoopSchedule(tiny("unused"), batches_per_epoch=8).out_of_time(1, 1e9)  # no budget


def test_max_steps_ends_inside_an_epoch(tiny):
    s = LoopSchedule(tiny("unused", "train.max_steps=3", "train.epochs=5"), batches_per_epoch=8)
    assert s.total_steps == 3 and s.log_due(3, {})


def test_epoch_ends_save_by_time_with_save_every_minutes(tiny):
    import time
    s = LoopSchedule(tiny("unused", "train.save_every_minutes=10", "train.epochs=4"), batches_per_epoch=4)
    assert not s.epoch_end_save_due(4, last=False)  # 10 minutes have not passed since the start
    assert s.epoch_end_save_due(4, last=True) and s.epoch_end_save_due(16, last=False)  # a stop; the run's end
    s.last_save = time.monotonic() - 10 * 60  # the last checkpoint was 10 minutes ago
    assert s.epoch_end_save_due(8, last=False)
    assert LoopSchedule(tiny("unused"), batches_per_epoch=4).epoch_end_save_due(4, last=False)  # 0: every epoch end
    with pytest.raises(ConfigError, match="train.save_every_minutes must be >= 0, got -1"):
        tiny("unused", "train.save_every_minutes=-1")


class _EpochEnds:
    """A callback that records the epoch ends it is called at (the report refreshes at the same hook)."""

    def __init__(self):
        self.epochs = []

    def on_epoch_end(self, run, epoch):
        self.epochs.append(epoch)


def test_short_epochs_save_only_on_the_time_interval_and_at_the_end(tmp_path, image_folder, tiny):
    """64 images in batches of 32: 2 steps an epoch, 3 epochs.  With saves every 10 minutes only the run's
    end writes a grid and a checkpoint and calls on_epoch_end (where the report refreshes); with an
    interval every epoch outlasts, each epoch end does."""
    import json

    from ganforge.api import train
    from ganforge.runfiles import RunDir
    runs = {}
    for minutes in (10, 1e-6):
        ends = _EpochEnds()
        cfg = tiny(image_folder, "train.epochs=3", "data.batch_size=32", f"train.save_every_minutes={minutes}")
        run = RunDir(train(cfg, runs_dir=tmp_path / str(minutes), log_format="quiet", callbacks=[ends]))
        grids = [json.loads(line)["file"] for line in (run.samples / RunDir.GRIDS).read_text().splitlines()]
        runs[minutes] = (ends.epochs, grids, sorted(p.name for p in run.checkpoints.glob("step_*.pt")))
        assert json.loads(run.summary.read_text())["step"] == 6 and run.generator.is_file()
    assert runs[10] == ([3], ["epoch_0003.png"], ["step_00000006.pt"])
    assert runs[1e-6] == ([1, 2, 3], [f"epoch_{e:04d}.png" for e in (1, 2, 3)],
                          [f"step_{s:08d}.pt" for s in (2, 4, 6)])
