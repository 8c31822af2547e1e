"""Short real runs with the report and TensorBoard on, shared by the reporting tests: training once per
session keeps the suite fast.  Tests that change a run work on a copy of it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ganforge
from conftest import tiny_config, write_images  # tests/conftest.py: the shared real-image helpers

EPOCHS = 3
IMAGES = 48  # 3 batches of 16: 3 steps per epoch


@pytest.fixture(scope="session")
def reported_run(tmp_path_factory, fashion_images) -> Path:
    """A finished 3-epoch run of the tiny DCGAN on real Fashion-MNIST images, report and TensorBoard on."""
    root = tmp_path_factory.mktemp("reported")
    write_images(root / "images", fashion_images, IMAGES)
    cfg = tiny_config(root / "images", f"train.epochs={EPOCHS}", "train.report=true", "train.tensorboard=true",
                      "train.log_every=1")
    return ganforge.train(cfg, runs_dir=root / "runs", log_format="quiet")


@pytest.fixture(scope="session")
def other_run(reported_run) -> Path:
    """A second real run beside the first, with a different learning rate and one epoch, report off."""
    images = reported_run.parent.parent / "images"
    cfg = tiny_config(images, "train.epochs=1", "optim.g.lr=0.0005")
    return ganforge.train(cfg, runs_dir=reported_run.parent, log_format="quiet")


@pytest.fixture
def run_copy(reported_run, tmp_path) -> Path:
    copy = tmp_path / reported_run.name
    shutil.copytree(reported_run, copy)
    return copy
