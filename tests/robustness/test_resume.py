"""Exact resume: N steps, stop, resume for M more gives the same bits as N + M steps straight (CPU)."""
from __future__ import annotations

import signal

import pytest
import torch

import ganforge
from ganforge.config import ConfigError
from ganforge.training.session import resume, save_config
from ganforge.training.signals import fit_until_stopped
from ganforge.training.trainer import Trainer

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


#: Every stateful strategy at once: adaptive augmentation, EMA, schedules, instance noise, R1, label flips.
STATEFUL = ["model.spectral_norm=true", "model.d_batchnorm=false", "loss.name=hinge", "ema.enabled=true",
            "augment.name=ada", "augment.ada_interval=1", "loss.r1_gamma=1.0", "loss.r1_every=2",
            "optim.g.schedule=cosine", "optim.d.schedule=cosine", "noise.std=0.1", "noise.anneal_steps=6",
            "data.hflip=0.5", "train.d_steps=2"]


class SignalAt:
    """A callback that sends this process SIGTERM after a given step, through the installed handler."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, trainer, step: int) -> None:
        if step == self.step:
            signal.raise_signal(signal.SIGTERM)


def straight_and_stopped_then_resumed(tmp_path, cfg, stop_after: int, capsys):
    """Train ``cfg`` straight through, and again stopped by SIGTERM after step ``stop_after`` and resumed;
    returns (the resumed run, the straight run)."""
    run = tmp_path / "stopped"
    run.mkdir()
    save_config(cfg, run)
    with one_thread():
        straight = ganforge.train(cfg, runs_dir=tmp_path / "straight", log_format="quiet")
        trainer = Trainer(cfg, run, log_format="quiet")
        trainer.callbacks = [SignalAt(stop_after)]
        fit_until_stopped(trainer)
        assert f"stopped by SIGTERM at step {stop_after}" in capsys.readouterr().out
        resume(run, log_format="quiet")
    return run, straight


def test_resume_is_exact_with_every_stateful_strategy(tmp_path, images, capsys):
    # 64 images, batch 16, 2 D steps per G step: 2 steps per epoch, 4 in all.  The stop is a SIGTERM after
    # step 1 rather than a shorter train.max_steps, which would also shorten the learning-rate schedules.
    run, straight = straight_and_stopped_then_resumed(tmp_path, tiny_cfg(images, *STATEFUL), 1, capsys)
    assert_bitwise_equal(run / "checkpoints/step_00000004.pt", straight / "checkpoints/step_00000004.pt")
    ema = [torch.load(r / "generator.pt", weights_only=True)["G"] for r in (run, straight)]
    assert all(torch.equal(ema[0][k], ema[1][k]) for k in ema[0])


#: The few-shot setup: FastGAN (noise injection, decoders), rpgan with lazy R1 and R2, LeCam's moving
#: averages, background-filled augmentation, the EMA half-life with ramp-up and Adam betas (0, 0.99).
FEW_SHOT = ["model.name=fastgan", "model.fastgan_decoder=16", "loss.name=rpgan", "loss.r1_gamma=0.5",
            "loss.r2_gamma=0.5", "loss.r1_every=2", "loss.lecam=0.1", "augment.name=diffaugment",
            "augment.policy=[translation, cutout]", "augment.fill=background", "ema.enabled=true",
            "ema.half_life_images=500", "ema.rampup=0.05", "optim.g.betas=[0.0, 0.99]", "optim.d.betas=[0.0, 0.99]"]


def test_resume_is_exact_with_the_few_shot_setup(tmp_path, images, capsys):
    run, straight = straight_and_stopped_then_resumed(tmp_path, tiny_cfg(images, *FEW_SHOT, "train.epochs=1"), 2,
                                                      capsys)
    final = sorted(p.name for p in (straight / "checkpoints").glob("step_*.pt"))[-1]
    assert_bitwise_equal(run / "checkpoints" / final, straight / "checkpoints" / final)
    state = torch.load(run / "checkpoints" / final, weights_only=True)
    assert set(state["penalties"][-1]) == {"real_avg", "fake_avg"}  # LeCam's averages travel with the run
