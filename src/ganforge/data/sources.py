"""Where images come from: a folder of files, or a named dataset held in memory.

Every source is a map-style dataset whose items are ``(uint8 tensor C x S x S, label, bad)``:
the image already converted to the configured channels, resized on its shorter side and cropped, and
``bad`` the index of a file that failed to decode and was replaced by the next good one (-1 when none).
Replacing rather than dropping keeps an epoch's size fixed, so step counts and resume stay exact.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile
from torchvision.transforms.v2 import functional as TF

from ganforge.config import Config

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# A truncated JPEG must be reported, not silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class DataError(RuntimeError):
    """A dataset that cannot be used; the message names the source and what to do."""


def to_channels(img: Image.Image, channels: int, background: tuple[int, int, int]) -> Image.Image:
    """Any PIL mode (L, LA, P, RGBA, CMYK, I;16, ...) to 'L' or 'RGB', transparency on ``background``."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("RGB", "L") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        canvas.alpha_composite(rgba)
        img = canvas
    return img.convert("L" if channels == 1 else "RGB")


def resize_crop(x: torch.Tensor, size: int, crop_top_left: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize the shorter side to ``size`` (antialiased) and crop ``size`` x ``size``."""
    if min(x.shape[-2:]) != size:
        x = TF.resize(x, size, antialias=True)
    h, w = x.shape[-2:]
    if crop_top_left is None:
        return TF.center_crop(x, [size, size])
    top, left = crop_top_left
    return x[..., top:top + size, left:left + size]


class FolderSource(torch.utils.data.Dataset):
    """Image files under a folder, searched recursively; hidden files and non-images ignored."""

    def __init__(self, root: Path, cfg: Config):
        self.root = Path(root)
        self.size = cfg.data.image_size
        self.channels = cfg.data.channels
        self.background = tuple(cfg.data.background)
        self.random_crop = cfg.data.crop == "random"
        self.seed = cfg.train.seed
        self.epoch = 0
        files = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS:
                    files.append(os.path.relpath(os.path.join(dirpath, f), self.root))
        if cfg.data.limit:
            files = files[: cfg.data.limit]
        self.files = files
        classes = sorted({Path(f).parts[0] for f in files if len(Path(f).parts) > 1})
        self.classes = classes if cfg.data.labels else []
        index = {c: i for i, c in enumerate(classes)}
        self.labels = [index.get(Path(f).parts[0], 0) if self.classes else 0 for f in files]

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        return self.files[i]

    def decode(self, i: int) -> torch.Tensor:
        with Image.open(self.root / self.files[i]) as img:
            img.load()
            img = to_channels(img, self.channels, self.background)
        x = TF.pil_to_tensor(img)
        crop = None
        if self.random_crop:
            # Seeded by (seed, epoch, index): the same crop whichever worker decodes it, so resume is exact.
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) & 0x7FFFFFFF)
            scale = self.size / min(x.shape[-2:])
            h, w = round(x.shape[-2] * scale), round(x.shape[-1] * scale)
            top = int(torch.randint(0, max(h - self.size, 0) + 1, (1,), generator=g))
            left = int(torch.randint(0, max(w - self.size, 0) + 1, (1,), generator=g))
            crop = (top, left)
        return resize_crop(x, self.size, crop)

    def __getitem__(self, i: int):
        bad = -1
        for attempt in range(len(self.files)):
            j = (i + attempt) % len(self.files)
            try:
                return self.decode(j), self.labels[j], bad
            except Exception:  # noqa: BLE001 - any decode failure means a broken file
                if bad == -1:
                    bad = j
        raise DataError(f"no file under {self.root} could be decoded")


class TensorSource(torch.utils.data.Dataset):
    """A dataset already decoded into one uint8 tensor (N, C, S, S): Fashion-MNIST, MNIST, ..."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, name: str, classes: list[str]):
        self.images, self.labels_t, self.source_name, self.classes = images, labels, name, classes

    def __len__(self) -> int:
        return self.images.shape[0]

    def name(self, i: int) -> str:
        return f"{self.source_name}[{i}]"

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels_t[i]), -1


def _read_idx(path: Path) -> np.ndarray:
    """The IDX format of (Fashion-)MNIST: big-endian header, then raw uint8."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]


def _fashion_mnist_dirs(cfg: Config) -> list[Path]:
    root = Path(os.path.expanduser(cfg.data.root))
    return [DEBIAN_FASHION_MNIST, root / "FashionMNIST" / "raw"]


def load_fashion_mnist(cfg: Config) -> TensorSource:
    for d in _fashion_mnist_dirs(cfg):
        for ext in (".gz", ""):
            img_path = d / f"train-images-idx3-ubyte{ext}"
            lbl_path = d / f"train-labels-idx1-ubyte{ext}"
            if img_path.is_file() and lbl_path.is_file():
                images = torch.from_numpy(_read_idx(img_path).copy()).unsqueeze(1)
                labels = torch.from_numpy(_read_idx(lbl_path).astype(np.int64))
                return _finish_tensor_source(images, labels, "fashion-mnist", FASHION_CLASSES, cfg)
    # Not installed: try torchvision's download (works online), else say how to get it.
    root = Path(os.path.expanduser(cfg.data.root))
    try:
        from torchvision.datasets import FashionMNIST
        ds = FashionMNIST(str(root), train=True, download=True)
    except Exception as e:  # noqa: BLE001
        raise DataError(
            "Fashion-MNIST is not on this machine and could not be downloaded "
            f"({type(e).__name__}: {e}).\n"
            "  On Debian/Ubuntu:  sudo apt-get install dataset-fashion-mnist   (files in /usr/share/datasets/fashion-mnist)\n"
            f"  Elsewhere: put train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz in {root}/FashionMNIST/raw/\n"
            "  (from https://github.com/zalandoresearch/fashion-mnist), or run once with internet access."
        ) from None
    images = ds.data.unsqueeze(1).contiguous()
    return _finish_tensor_source(images, ds.targets.long(), "fashion-mnist", FASHION_CLASSES, cfg)


def _finish_tensor_source(images: torch.Tensor, labels: torch.Tensor, name: str, classes: list[str],
                          cfg: Config) -> TensorSource:
    if cfg.data.limit:
        images, labels = images[: cfg.data.limit], labels[: cfg.data.limit]
    if images.shape[1] != cfg.data.channels:
        images = images.expand(-1, 3, -1, -1) if cfg.data.channels == 3 else (
            (images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            .round().clamp(0, 255).to(torch.uint8))
    out = []
    for chunk in images.split(4096):  # resize in chunks: bounded memory
        out.append(resize_crop(chunk, cfg.data.image_size))
    return TensorSource(torch.cat(out).contiguous(), labels, name, classes)


NAMED = {"fashion-mnist": load_fashion_mnist}


def open_source(cfg: Config):
    """The dataset that ``data.source`` names: a named set, or a folder."""
    src = cfg.data.source
    if src in NAMED:
        return NAMED[src](cfg)
    path = Path(os.path.expanduser(src))
    if path.is_dir():
        ds = FolderSource(path, cfg)
        if len(ds) == 0:
            raise DataError(f"no image files under {path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, "
                            "recursively); point data.source at a folder of images")
        return ds
    raise DataError(f"data.source '{src}' is neither a folder, a zip archive nor a named dataset "
                    f"({', '.join(sorted(NAMED))}); check the path")
