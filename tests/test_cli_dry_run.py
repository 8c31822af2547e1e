"""``ganforge train --dry-run``: everything checked and described, nothing trained or written."""
from __future__ import annotations

import pytest

from ganforge.cli import main

TINY = ["data.channels=3", "data.batch_size=16", "data.num_workers=0", "model.ngf=8", "model.ndf=8", "model.nz=16",
        "train.n_fixed_noise=16", "train.log_every=2", "train.device=cpu", "train.epochs=3"]


def test_dry_run_prints_the_run_and_writes_nothing(tmp_path, image_folder, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--dry-run", "--preset", "quickstart", "--runs-dir", str(runs), "--name", "probe",
                 f"data.source={image_folder}", *TINY]) == 0
    out = capsys.readouterr().out
    assert "nothing is trained or written" in out
    assert "model:\n" in out and "name: dcgan" in out and f"source: {image_folder}" in out  # the resolved config
    assert "generator:" in out and "parameters" in out and "FLOP" in out  # the models, as describe measures them
    assert "data: 64 images in" in out and "4 steps per epoch at batch 16" in out and "12 steps in all" in out
    # The memory of a training step on the run's device (here the CPU: compared with the machine's RAM).
    assert "memory per step on cpu: about " in out and "per image x 16; amp off" in out and "this machine's RAM" in out
    assert "warning:" not in out
    assert "step_*.pt at every epoch end" in out
    assert f"run directory: {runs}/<timestamp>_probe/" in out and "epoch_0001.png" in out and "generator.pt" in out
    assert not runs.exists()


def test_dry_run_fails_as_the_run_would_and_writes_nothing(tmp_path, image_folder, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--dry-run", "--preset", "quickstart", "--runs-dir", str(runs),
                 f"data.source={image_folder}", *TINY, "loss.name=hinge", "loss.real_label=0.9"]) == 2
    assert "loss.name=hinge has no real/fake targets" in capsys.readouterr().err
    assert not runs.exists()


def test_dry_run_warns_before_a_step_that_would_not_fit_in_memory(tmp_path, image_folder, capsys):
    """ResNet at 1024 px keeps about 1.8 GiB per image (describe): batches of 64 need more than the
    headroom of this machine's RAM, and the dry run says so before anything is trained."""
    from ganforge.gpu_plan import HEADROOM, system_memory
    if system_memory() is None or system_memory() * HEADROOM > 64 * 1.8 * 2**30:
        pytest.skip("this machine's RAM would hold the step")
    runs = tmp_path / "runs"
    assert main(["train", "--dry-run", "--preset", "resnet-1024", "--runs-dir", str(runs), f"data.source={image_folder}",
                 "data.batch_size=64", "data.num_workers=0", "train.device=cpu", "train.save_every_minutes=10"]) == 0
    out = capsys.readouterr().out
    assert "memory per step on cpu: about " in out and "per image x 64" in out
    assert "  warning: a training step needs about " in out and "lower data.batch_size" in out
    assert "step_*.pt at epoch ends at least 10 minutes apart and at the end" in out
    assert not runs.exists()
