"""SIGKILL at random instants of a real training run, resume, repeat: nothing saved is lost or corrupt, each
step is logged once, and the run ends bit for bit as an uninterrupted one (tests/robustness/fault_harness.py;
benchmarks/robustness_faults.py runs 50 or more cycles, random and aimed kills mixed)."""
from __future__ import annotations

import pytest

from .fault_harness import kill_and_resume, same_final_weights, uninterrupted

EPOCHS = 6  # 24 steps, a checkpoint after each


def _assert_nothing_lost(counts) -> None:
    assert counts.corrupt_checkpoints == 0 and counts.state_lost == 0, counts.notes
    assert counts.duplicated_steps == 0 and counts.missing_steps == 0
    # Every resume worked (a kill before the first checkpoint starts the run afresh: not a resume).
    assert counts.resumes_ok == counts.resumes >= 2
    assert counts.stale_temporaries == 0  # what the killed writers left half-written was cleaned up


@pytest.mark.slow
def test_random_kills_then_resume_lose_nothing_and_end_as_an_uninterrupted_run(tmp_path, images):
    run, counts = kill_and_resume(images, tmp_path / "killed", cycles=3, epochs=EPOCHS, seed=1, max_delay=3.0,
                                  modes=("random",), aim_every_cycle=True)
    _assert_nothing_lost(counts)
    reference = uninterrupted(images, tmp_path / "straight", EPOCHS)
    assert same_final_weights(run, reference)


@pytest.mark.slow
def test_kills_aimed_inside_checkpoint_manifest_and_report_writes_lose_nothing(tmp_path, images):
    # Each kill comes at a random instant inside a write the harness saw begin (its temporary file).
    run, counts = kill_and_resume(images, tmp_path / "killed", cycles=4, epochs=EPOCHS, seed=2,
                                  modes=("checkpoint_write", "manifest_update", "report_refresh"),
                                  aim_every_cycle=True)
    _assert_nothing_lost(counts)
    assert counts.kills_aimed >= 3
    # At least one landed inside its write (a kill the machine delayed past a window's end lands just after).
    assert counts.kills_in_checkpoint_write + counts.kills_in_manifest_update + counts.kills_in_report_refresh >= 1
    reference = uninterrupted(images, tmp_path / "straight", EPOCHS)
    assert same_final_weights(run, reference)
