"""Named datasets found on this machine, without a download."""
from __future__ import annotations

import gzip
import shutil

import torch

from ganforge.data import build_loader
from ganforge.data.named import DEBIAN_FASHION_MNIST

CPU = torch.device("cpu")


def test_fashion_mnist_from_the_debian_files(fashion_images, tiny):
    loader = build_loader(tiny("fashion-mnist", "data.limit=160", "data.channels=1"), CPU)
    assert loader.num_images == 160 and loader.classes[0] == "T-shirt/top"
    assert loader.dataset.images.shape == (160, 1, 32, 32)


def test_mnist_reads_idx_files_from_data_root(fashion_images, tmp_path, tiny):
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):  # the same IDX format as MNIST's own files
        with gzip.open(DEBIAN_FASHION_MNIST / f"{name}.gz") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    loader = build_loader(tiny("mnist", f"data.root={tmp_path / 'root'}", "data.limit=64"), CPU)
    assert loader.num_images == 64 and loader.classes == [str(d) for d in range(10)]
    x, y = next(iter(loader.epoch(0)))
    assert x.shape == (16, 3, 32, 32) and y.dtype == torch.long


def test_celeba_reads_the_downloaded_zip_in_place(image_folder, tmp_path, tiny, zip_folder):
    root = tmp_path / "root"
    (root / "celeba").mkdir(parents=True)
    zip_folder(image_folder, root / "celeba" / "img_align_celeba.zip", inner="img_align_celeba")
    loader = build_loader(tiny("celeba", f"data.root={root}"), CPU)
    assert loader.num_images == 64 and type(loader.dataset).__name__ == "ZipSource"
