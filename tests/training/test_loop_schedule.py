"""When the loop logs, samples, saves, checks the guard and stops (training/loop_schedule.py)."""
from __future__ import annotations

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
