"""Exact resume: N steps, stop, resume for M more gives the same bits as N + M steps straight (CPU)."""
from __future__ import annotations

import pytest

import ganforge
from ganforge.config import ConfigError
from ganforge.training.session import resume

from .conftest import STEPS, assert_bitwise_equal, one_thread, tiny_cfg


def test_stop_and_resume_gives_the_same_weights_bit_for_bit(tmp_path, images, reference_run):
    # Stop inside the first epoch (step 3 of 4), then resume to the end of the second.
    with one_thread():
        run = ganforge.train(tiny_cfg(images, "train.max_steps=3"), runs_dir=tmp_path, log_format="quiet")
        assert sorted(p.name for p in (run / "checkpoints").glob("step_*.pt")) == ["step_00000003.pt"]
        resume(run, log_format="quiet", overrides=["train.max_steps=0"])
    final = f"checkpoints/step_{STEPS:08d}.pt"
    assert_bitwise_equal(run / final, reference_run / final)
    assert_bitwise_equal(run / "checkpoints/step_00000004.pt", reference_run / "checkpoints/step_00000004.pt")


def test_resume_refuses_a_changed_config_and_names_the_keys(damaged_copy):
    run = damaged_copy()
    with pytest.raises(ConfigError) as e:
        resume(run, log_format="quiet", overrides=["optim.g.lr=0.001", "model.nz=32"])
    msg = str(e.value)
    assert "optim.g.lr: 0.0002 -> 0.001" in msg and "model.nz: 16 -> 32" in msg and "--force" in msg
