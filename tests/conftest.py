"""Shared fixtures: real images on disk, and configs small enough for 2 CPU cores.

The real images are Fashion-MNIST's (Debian package ``dataset-fashion-mnist``, installed by .ci/run);
tests write them out as real PNG/JPEG files in temporary folders.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import config as C
from ganforge.data.sources import DEBIAN_FASHION_MNIST, _read_idx

# Two cores: keep torch from oversubscribing when pytest-xdist runs workers side by side.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

FASHION_TRAIN = DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz"
if not FASHION_TRAIN.is_file():  # a GPU machine without the package: the subset scripts/gpu_check.sh --prepare carries
    _carried = Path(__file__).resolve().parent.parent / ".gpu_carry/data/FashionMNIST/raw/train-images-idx3-ubyte.gz"
    FASHION_TRAIN = _carried if _carried.is_file() else FASHION_TRAIN
requires_fashion_mnist = pytest.mark.skipif(
    not FASHION_TRAIN.is_file(),
    reason="Fashion-MNIST files missing: apt-get install dataset-fashion-mnist (.ci/run does)")


@pytest.fixture(scope="session")
def fashion_images() -> np.ndarray:
    """The first 2,000 Fashion-MNIST training images, uint8 (N, 28, 28)."""
    if not FASHION_TRAIN.is_file():
        pytest.skip("Fashion-MNIST files missing: apt-get install dataset-fashion-mnist")
    return _read_idx(FASHION_TRAIN)[:2000].copy()


def read_fashion_labels() -> np.ndarray:
    """The classes (0-9) of the first 2,000 Fashion-MNIST training images, in :func:`fashion_images`' order."""
    path = FASHION_TRAIN.with_name("train-labels-idx1-ubyte.gz")
    if not path.is_file():
        pytest.skip("Fashion-MNIST labels missing: apt-get install dataset-fashion-mnist")
    return _read_idx(path)[:2000].copy()


def write_images(folder: Path, images: np.ndarray, n: int, rgb: bool = True, size: int = 40,
                 formats: tuple[str, ...] = ("png", "jpg"), classes: int = 0) -> list[Path]:
    """Write ``n`` real images as files (alternating formats), upscaled to ``size`` and tinted to RGB."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = images[i % len(images)]
        img = Image.fromarray(arr, "L").resize((size, size), Image.BILINEAR)
        if rgb:
            # A per-image tint makes real colour images out of the grayscale ones.
            tint = np.array([(i * 37) % 256, (i * 91) % 256, (i * 53) % 256], dtype=np.float32) / 255.0
            a = np.asarray(img, dtype=np.float32)[..., None] * (0.5 + 0.5 * tint)
            img = Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGB")
        sub = folder / f"class_{i % classes}" if classes else folder
        sub.mkdir(parents=True, exist_ok=True)
        ext = formats[i % len(formats)]
        p = sub / f"img_{i:05d}.{ext}"
        img.save(p, quality=95) if ext in ("jpg", "jpeg") else img.save(p)
        paths.append(p)
    return paths


@pytest.fixture
def image_folder(tmp_path, fashion_images) -> Path:
    """64 real RGB images (PNG and JPEG, 40x40) in a temporary folder."""
    folder = tmp_path / "images"
    write_images(folder, fashion_images, 64)
    return folder


def tiny_config(source: str | Path, *overrides: str, channels: int = 3) -> C.Config:
    """A DCGAN at 32x32 with narrow layers and small batches: a step takes milliseconds on a CPU."""
    return C.load(preset="quickstart", overrides=[
        f"data.source={source}", f"data.channels={channels}", "data.batch_size=16", "data.num_workers=0",
        "model.ngf=8", "model.ndf=8", "model.nz=16", "train.n_fixed_noise=16", "train.log_every=2",
        "train.tensorboard=false", "train.report=false", "train.device=cpu", "data.limit=0", "data.hflip=0",
        *overrides])


@pytest.fixture
def tiny():
    return tiny_config


def fit_whole_and_resumed(cfg: C.Config, tmp_path: Path, whole=None, midsave: str = "step_00000002.pt"):
    """Train ``cfg`` uninterrupted in ``tmp_path/whole`` (``whole``: that Trainer, built by the caller to look
    at it first), then again from its real midsave on disk in ``tmp_path/resumed``; assert that both end
    with the same G, D and G_ema weights, and return (whole, its state dict, the resumed run's)."""
    from ganforge.training.trainer import Trainer
    whole = whole or Trainer(cfg, tmp_path / "whole", log_format="quiet")
    (tmp_path / "whole").mkdir()
    whole.fit()
    (tmp_path / "resumed").mkdir()
    resumed = Trainer(cfg, tmp_path / "resumed", log_format="quiet")
    resumed.resume_from(tmp_path / "whole" / "checkpoints" / midsave)
    resumed.fit()
    a, b = whole.state_dict(), resumed.state_dict()
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"
    return whole, a, b


@pytest.fixture(scope="session")
def emoji_dir(tmp_path_factory) -> Path:
    """64 real RGBA emoji (Noto, 64x64 PNG) in a folder; npm installs the package once (tests/emoji_data.py)."""
    from emoji_data import emoji_folder
    return emoji_folder(tmp_path_factory.mktemp("emoji") / "emoji", 64)


@pytest.fixture(scope="session")
def emoji_128_dir(tmp_path_factory) -> Path:
    """128 real emoji: the fewest for which the recipe takes latent groups (with their Gram part and
    unbiased estimates), so a recipe built on this folder is the one a user's emoji set gets."""
    from emoji_data import emoji_folder
    return emoji_folder(tmp_path_factory.mktemp("emoji128") / "emoji", 128)


def random_dinov2_checkpoint(folder: Path) -> Path:
    """A file laid out as Meta's dinov2_vits14_pretrain.pth (keys, shapes), with random weights."""
    import timm

    from ganforge.metrics.dinov2 import WEIGHTS_FILE
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518, num_classes=0)
    # timm starts the blocks' layer scales at 1e-5, which leaves every image nearly the same class token;
    # trained DINOv2 weights are far from that, so the file here scales its blocks by 1.
    state = {k: torch.ones_like(v) if k.endswith(".gamma") else v for k, v in vit.state_dict().items()}
    state["mask_token"] = torch.zeros(1, 384)
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / WEIGHTS_FILE)
    return folder / WEIGHTS_FILE
