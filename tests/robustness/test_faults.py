"""SIGKILL at random instants of a real training run, resume, repeat: nothing saved is lost or corrupt, each
step is logged once, and the run ends bit for bit as an uninterrupted one (tests/robustness/fault_harness.py;
benchmarks/robustness_faults.py runs 50 or more cycles)."""
from __future__ import annotations

import pytest

from .fault_harness import kill_and_resume, same_final_weights, uninterrupted

EPOCHS = 6  # 24 steps, a checkpoint after each


@pytest.mark.slow
def test_random_kills_then_resume_lose_nothing_and_end_as_an_uninterrupted_run(tmp_path, images):
    run, counts = kill_and_resume(images, tmp_path / "killed", cycles=3, epochs=EPOCHS, seed=1, max_delay=3.0)
    assert counts.corrupt_checkpoints == 0 and counts.state_lost == 0, counts.notes
    assert counts.duplicated_steps == 0 and counts.missing_steps == 0
    assert counts.resumes_ok == counts.resumes >= 3
    reference = uninterrupted(images, tmp_path / "straight", EPOCHS)
    assert same_final_weights(run, reference)
