"""--features dinov2 (FD-DINOv2): the real pipeline on the ViT-S/14 with random weights, and the offline error.

No test downloads: the weights file here is the official checkpoint's layout (its keys and shapes, the
37 x 37 position embeddings of 518 px, the mask token) filled with random numbers, put where torch hub
keeps it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import random_dinov2_checkpoint
from ganforge.cli import main
from ganforge.config import ConfigError
from ganforge.metrics import build_extractor
from ganforge.metrics.dinov2 import WEIGHTS_FILE, check_available
from ganforge.metrics.evaluate import evaluate_sources

pytest.importorskip("timm", reason="needs the extra 'metrics': pip install 'ganforge[metrics]'")

N = 8


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub folder of this test's own, and no downloads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_offline_without_weights_says_which_file_goes_where(hub, image_folder, capsys):
    with pytest.raises(ConfigError) as err:
        check_available()
    message = str(err.value)
    assert WEIGHTS_FILE in message and str(hub) in message and "--features swd" in message
    assert "dl.fbaipublicfiles.com/dinov2/dinov2_vits14/" in message
    # As a user sees it: exit 2, the same words, no traceback.
    assert main(["eval", "--fake", str(image_folder), "--real", str(image_folder), "--features", "dinov2",
                 "--n", str(N), "--device", "cpu"]) == 2
    err_text = capsys.readouterr().err
    assert WEIGHTS_FILE in err_text and str(hub) in err_text and "Traceback" not in err_text


@pytest.mark.slow  # 24 ViT-S passes at 224 px: about 25 s on 2 busy cores
def test_the_vit_pipeline_scores_real_images(hub, image_folder, tmp_path, fashion_images, capsys):
    from conftest import write_images

    random_dinov2_checkpoint(hub)
    extractor = build_extractor("dinov2")
    images = torch.from_numpy(np.stack([fashion_images[:2]] * 3, axis=1))  # 28 px grey as RGB: resized to 224
    features, logits = extractor(images)
    assert features.shape == (2, 384) and logits.shape == (2, 0) and torch.isfinite(features).all()
    assert not torch.equal(features[0], features[1])
    assert torch.equal(extractor(images)[0], features)  # deterministic
    assert check_available() == hub / WEIGHTS_FILE

    same = evaluate_sources(str(image_folder), str(image_folder), 32, metrics="fid,kid,pr", features="dinov2", n=N)
    assert abs(same["fid_dinov2"]) < 1e-3 and same["precision_dinov2"] == 1.0
    other = tmp_path / "other"
    write_images(other, fashion_images[500:], N)
    capsys.readouterr()
    out = tmp_path / "fd.json"
    assert main(["eval", "--fake", str(other), "--real", str(image_folder), "--features", "dinov2", "--n", str(N),
                 "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["fid_dinov2"] > 1e-3 and "is_dinov2" not in report and "is" not in report["metrics"]
    assert "fid_dinov2 " in printed and "FD-DINOv2" in printed
    # No classifier, so no Inception Score: asked for, it says so before any work.
    assert main(["eval", "--fake", str(other), "--real", str(image_folder), "--features", "dinov2",
                 "--metrics", "fid,is", "--device", "cpu"]) == 2
    assert "has no classifier" in capsys.readouterr().err


def test_a_file_that_is_not_dinov2_weights_is_refused(hub):
    hub.mkdir(parents=True)
    torch.save({"something": torch.zeros(3)}, hub / WEIGHTS_FILE)
    with pytest.raises(ConfigError, match="could not be loaded as DINOv2 ViT-S/14 weights"):
        build_extractor("dinov2")
