"""Named datasets: ``fashion-mnist``, ``mnist``, ``cifar10`` (held in memory) and ``celeba`` (files).

Each is looked for first on this machine (Fashion-MNIST also in the Debian package's folder), then
downloaded through torchvision into ``data.root``; offline, the error says where to put the files.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from ganforge.config import Config
from ganforge.data.decode import resize_crop
from ganforge.data.errors import DataError
from ganforge.data.files import FolderSource, ZipSource

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]


class TensorSource(torch.utils.data.Dataset):
    """A dataset already decoded into one uint8 tensor (N, C, S, S): Fashion-MNIST, MNIST, CIFAR-10."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, name: str, classes: list[str]):
        self.images, self.labels_t, self.source_name, self.classes = images, labels, name, classes
        self.location = name

    def __len__(self) -> int:
        return self.images.shape[0]

    def name(self, i: int) -> str:
        return f"{self.source_name}[{i}]"

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        return self.images[i], int(self.labels_t[i]), -1

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[indices], self.labels_t[indices]

    def to(self, device: torch.device) -> "TensorSource":
        self.images, self.labels_t = self.images.to(device), self.labels_t.to(device)
        return self


def _read_idx(path: Path) -> np.ndarray:
    """The IDX format of (Fashion-)MNIST: big-endian header, then raw uint8."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _root(cfg: Config) -> Path:
    return Path(os.path.expanduser(cfg.data.root))


def _finish(images: torch.Tensor, labels: torch.Tensor, name: str, classes: list[str], cfg: Config) -> TensorSource:
    """Channels, size and limit of an in-memory set, as the config asks."""
    if cfg.data.limit:
        images, labels = images[: cfg.data.limit], labels[: cfg.data.limit]
    if cfg.data.channels == 4:  # these sets are opaque: colour (grey repeated) and an alpha of 255
        rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        images = torch.cat([rgb, torch.full_like(rgb[:, :1], 255)], dim=1)
    if images.shape[1] != cfg.data.channels:
        images = images.expand(-1, 3, -1, -1) if cfg.data.channels == 3 else (
            (images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            .round().clamp(0, 255).to(torch.uint8))
    out = [resize_crop(chunk, cfg.data.image_size) for chunk in images.split(4096)]  # bounded memory
    return TensorSource(torch.cat(out).contiguous(), labels.long(), name, classes)


def _offline_help(name: str, error: Exception, where: str) -> DataError:
    return DataError(f"{name} is not on this machine and could not be downloaded ({type(error).__name__}: "
                     f"{str(error)[:200]}).\n{where}")


def _torchvision(cls_name: str, cfg: Config, **kwargs):
    """A torchvision dataset from data.root, downloading it only when it is not there yet."""
    import torchvision.datasets as tvd
    cls = getattr(tvd, cls_name)
    try:
        return cls(str(_root(cfg)), download=False, **kwargs)
    except (RuntimeError, FileNotFoundError):
        return cls(str(_root(cfg)), download=True, **kwargs)


def load_fashion_mnist(cfg: Config) -> TensorSource:
    for d in (DEBIAN_FASHION_MNIST, _root(cfg) / "FashionMNIST" / "raw"):
        for ext in (".gz", ""):
            img_path = d / f"train-images-idx3-ubyte{ext}"
            lbl_path = d / f"train-labels-idx1-ubyte{ext}"
            if img_path.is_file() and lbl_path.is_file():
                images = torch.from_numpy(_read_idx(img_path).copy()).unsqueeze(1)
                labels = torch.from_numpy(_read_idx(lbl_path).astype(np.int64))
                return _finish(images, labels, "fashion-mnist", FASHION_CLASSES, cfg)
    try:
        ds = _torchvision("FashionMNIST", cfg, train=True)
    except Exception as e:  # noqa: BLE001 - offline: name resolution fails at once
        raise _offline_help("Fashion-MNIST", e,
                            "  On Debian/Ubuntu:  sudo apt-get install dataset-fashion-mnist   (files in "
                            f"{DEBIAN_FASHION_MNIST})\n  Elsewhere: put train-images-idx3-ubyte.gz and "
                            f"train-labels-idx1-ubyte.gz in {_root(cfg)}/FashionMNIST/raw/ (from "
                            "https://github.com/zalandoresearch/fashion-mnist), or run once online.") from None
    return _finish(ds.data.unsqueeze(1).contiguous(), ds.targets, "fashion-mnist", FASHION_CLASSES, cfg)


def load_mnist(cfg: Config) -> TensorSource:
    try:
        ds = _torchvision("MNIST", cfg, train=True)
    except Exception as e:  # noqa: BLE001
        raise _offline_help("MNIST", e,
                            f"  Put train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz in {_root(cfg)}/MNIST/raw/ "
                            "(from any MNIST mirror), or run once online; or set data.root to where they are.") from None
    return _finish(ds.data.unsqueeze(1).contiguous(), ds.targets, "mnist", MNIST_CLASSES, cfg)


def load_cifar10(cfg: Config) -> TensorSource:
    try:
        ds = _torchvision("CIFAR10", cfg, train=True)
    except Exception as e:  # noqa: BLE001
        raise _offline_help("CIFAR-10", e,
                            "  Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and "
                            f"unpack it in {_root(cfg)}/ (giving {_root(cfg)}/cifar-10-batches-py/), or run once "
                            "online.") from None
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return _finish(images, torch.tensor(ds.targets), "cifar10", list(ds.classes), cfg)


def load_celeba(cfg: Config):
    """CelebA's aligned faces (202,599 JPEGs), read as files: a folder or the zip as downloaded."""
    root = _root(cfg)
    for folder in (root / "celeba" / "img_align_celeba", root / "img_align_celeba"):
        if folder.is_dir():
            return FolderSource(folder, cfg)
    for archive in (root / "celeba" / "img_align_celeba.zip", root / "img_align_celeba.zip"):
        if archive.is_file():
            return ZipSource(archive, "img_align_celeba", cfg)
    try:
        _torchvision("CelebA", cfg, split="all", target_type=[])
    except Exception as e:  # noqa: BLE001 - offline, or Google Drive's download quota
        raise _offline_help("CelebA", e,
                            "  Download img_align_celeba.zip (1.4 GB) from "
                            "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and either train on it directly "
                            f"(--data img_align_celeba.zip, no unzipping needed) or put it in {root}/celeba/.") from None
    return FolderSource(root / "celeba" / "img_align_celeba", cfg)


NAMED = {"fashion-mnist": load_fashion_mnist, "mnist": load_mnist, "cifar10": load_cifar10, "celeba": load_celeba}
