"""Shared pieces of the fault-injection tests: real images, one finished reference run, the CLI as a process.

The reference run (2 epochs of the tiny DCGAN, deterministic, 8 steps) is trained once per session and
copied by the tests that damage a run.  Runs are trained single-threaded, in this process and in the
``python -m ganforge`` subprocesses alike, so that their weights can be compared bit for bit.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge import config as C

#: The tiny DCGAN of tests/conftest.py, deterministic; as KEY=VALUE arguments for the command line too.
TINY = ["data.channels=3", "data.batch_size=16", "data.num_workers=0", "model.ngf=8", "model.ndf=8", "model.nz=16",
        "train.n_fixed_noise=16", "train.log_every=2", "train.tensorboard=false", "train.report=false",
        "train.device=cpu", "data.limit=0", "train.deterministic=true", "train.epochs=2"]
STEPS = 8  # 64 images / batch 16 = 4 steps per epoch, 2 epochs


def tiny_args(images: Path, *extra: str) -> list[str]:
    return [f"data.source={images}", *TINY, *extra]


def tiny_cfg(images: Path, *extra: str) -> C.Config:
    return C.load(preset="quickstart", overrides=tiny_args(images, *extra))


@contextlib.contextmanager
def one_thread():
    """Train as the subprocesses do (OMP_NUM_THREADS=1): same reductions, same bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cli_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    src = str(Path(ganforge.__file__).parent.parent)  # the ganforge under test, even without an install
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def ganforge_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganforge", *args]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint that training changes: G, D and both optimisers' states."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    out = {}
    for part in ("G", "D"):
        out.update({f"{part}.{k}": v for k, v in state[part].items()})
    for part in ("opt_g", "opt_d"):
        for idx, s in state[part]["state"].items():
            out.update({f"{part}.{idx}.{k}": v for k, v in s.items() if torch.is_tensor(v)})
    return out


def assert_bitwise_equal(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ between {a} and {b}, e.g. {different[:3]}"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(run: Path) -> dict:
    return json.loads((run / "checkpoints" / "manifest.json").read_text())


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if ".tmp-" in p.name)


def write_images(folder: Path, images: np.ndarray, n: int, rgb: bool = True) -> Path:
    """``n`` real images as PNG and JPEG files, 40x40, tinted to colour unless ``rgb`` is false (as
    tests/conftest.py's helper, which cannot be imported under --import-mode=importlib)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.fromarray(images[i % len(images)], "L").resize((40, 40), Image.BILINEAR)
        if rgb:
            tint = np.array([(i * 37) % 256, (i * 91) % 256, (i * 53) % 256], dtype=np.float32) / 255.0
            a = np.asarray(img, dtype=np.float32)[..., None] * (0.5 + 0.5 * tint)
            img = Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGB")
        img.save(folder / f"img_{i:05d}.png") if i % 2 == 0 else img.save(folder / f"img_{i:05d}.jpg", quality=95)
    return folder


@pytest.fixture(scope="session")
def images(tmp_path_factory, fashion_images) -> Path:
    """64 real RGB images (PNG and JPEG) from Fashion-MNIST."""
    folder = tmp_path_factory.mktemp("robust-images") / "images"
    write_images(folder, fashion_images, 64)
    return folder


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, images) -> Path:
    """A finished, uninterrupted 8-step run: checkpoints at steps 4 and 8."""
    with one_thread():
        return ganforge.train(tiny_cfg(images), runs_dir=tmp_path_factory.mktemp("reference"), log_format="quiet")


@pytest.fixture
def damaged_copy(tmp_path, reference_run):
    """A copy of the reference run for a test to break."""
    def make(name: str = "run") -> Path:
        dest = tmp_path / name
        shutil.copytree(reference_run, dest)
        return dest
    return make


def fill_disk(disk: Path, leave: int) -> Path:
    """A ballast file that fills the file system at ``disk``, then gives back ``leave`` bytes."""
    import errno
    ballast = disk / "ballast"
    # Unbuffered: a buffered file keeps the tail of a short write and raises ENOSPC again on close.
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    os.truncate(ballast, max(ballast.stat().st_size - leave, 0))
    return ballast
