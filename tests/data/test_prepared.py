"""ganforge prepare: the same images as training from the source, a manifest, bounded memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.config import Config, DataConfig
from ganforge.data import DataError, build_loader
from ganforge.data.prepared import prepare, verify

CPU = torch.device("cpu")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "ganforge", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_prepare_from_a_zip_trains_on_exactly_the_same_images(image_folder, tmp_path, tiny, zip_folder):
    archive = zip_folder(image_folder, tmp_path / "faces.zip", inner="faces")
    out = tmp_path / "prepared"
    result = _cli("prepare", f"{archive}:faces", str(out), "--size", "32", "--channels", "3", "--quiet",
                  "--workers", "2", cwd=tmp_path)  # each worker opens its own handle on the zip
    assert result.returncode == 0, result.stderr
    assert "64 images at 32x32x3" in result.stdout and f"--data {out}" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "ganforge-prepared-1" and manifest["count"] == 64
    assert (manifest["size"], manifest["channels"], manifest["source"]) == (32, 3, f"{archive}:faces")
    assert manifest["checksum"].startswith("sha256:") and verify(out)
    assert (out / "images.u8").stat().st_size == 64 * 3 * 32 * 32

    from_source = build_loader(tiny(f"{archive}:faces", "data.hflip=0.5"), CPU)
    from_prepared = build_loader(tiny(out, "data.hflip=0.5"), CPU)
    assert from_prepared.num_images == from_source.num_images
    for epoch in (0, 1):
        pairs = list(zip(from_source.epoch(epoch), from_prepared.epoch(epoch)))
        assert len(pairs) == 4
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_prepare_skips_broken_files_records_labels_and_never_overwrites(messy, tmp_path):
    out = tmp_path / "out"
    cfg = Config(data=DataConfig(source=str(messy.root), image_size=32, channels=1, labels=True))
    m = prepare(cfg, out, workers=0, progress=False)
    assert m["count"] == len(messy.good) == 90
    assert sorted(name for name, _ in m["skipped"]) == messy.broken
    assert m["classes"] == sorted(["shirts", "schuhe_äöü", "バッグ"])
    labels = np.load(out / "labels.npy")
    assert labels.shape == (90,) and set(labels.tolist()) == {0, 1, 2}
    with pytest.raises(DataError, match="never overwrites"):
        prepare(cfg, out, workers=0, progress=False)


def test_a_prepared_dataset_says_how_to_train_on_it(image_folder, tmp_path, tiny):
    out = tmp_path / "p"
    prepare(tiny(image_folder), out, workers=0, progress=False)  # 32x32, 3 channels
    with pytest.raises(DataError, match="data.image_size=32 data.channels=3"):
        build_loader(tiny(out, "data.image_size=64"), CPU)
    with pytest.raises(DataError, match="data.crop=center"):
        build_loader(tiny(out, "data.crop=random"), CPU)
    with pytest.raises(DataError, match="--labels"):
        build_loader(tiny(out, "data.labels=true"), CPU)
    with open(out / "images.u8", "r+b") as f:  # a flipped byte: the checksum notices
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    assert not verify(out)
    with open(out / "images.u8", "ab") as f:  # a wrong size: loading refuses
        f.write(b"\x00" * 10)
    with pytest.raises(DataError, match="damaged"):
        build_loader(tiny(out), CPU)


def test_rows_read_after_the_file_shrank_are_a_data_error_never_a_crash(image_folder, tmp_path, tiny):
    """Issue 42: a prepared set cut short while a run reads it (CI met the window between a size check and a
    memory-mapped read: SIGBUS killed the run).  Reads run in a child process, so a crash shows as one."""
    out = tmp_path / "p"
    prepare(tiny(image_folder), out, workers=0, progress=False)
    code = f"""
import sys, os, numpy as np, torch
sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
from conftest import tiny_config
from ganforge.data import DataError
from ganforge.data.prepared_source import PreparedSource
source = PreparedSource({str(out)!r}, tiny_config({str(out)!r}))
whole = source.get_batch(torch.arange(64))[0]
os.truncate({str(out / "images.u8")!r}, source.row_bytes * 40 + 100)  # mid-row, as a cut-off copy leaves it
assert torch.equal(source.get_batch(torch.tensor([39, 3, 0]))[0], whole[[39, 3, 0]])  # rows before the cut
for read in (lambda: source.get_batch(torch.tensor([2, 40, 63])), lambda: source[40], lambda: source.hold(torch.device("cpu"))):
    try:
        read()
    except DataError as e:
        assert "changed during training" in str(e) and "run ganforge prepare again" in str(e), e
    else:
        raise AssertionError("a read past the end of the shrunk file succeeded")
os.remove({str(out / "images.u8")!r})
try:
    source.get_batch(torch.tensor([0]))
except DataError as e:
    print("gone:", e)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # -7 is SIGBUS
    assert "gone:" in done.stdout and "No such file" in done.stdout, done.stdout


def _rss_anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    pytest.skip("no /proc/self/status RssAnon on this system")


def test_training_from_a_prepared_dataset_streams_with_bounded_memory(tmp_path, tiny):
    out = tmp_path / "big"
    n = 6000  # 6000 x 3 x 64 x 64 = 74 MB on disk
    prepare(tiny("fashion-mnist", "data.image_size=64", f"data.limit={n}"), out, workers=0, progress=False)
    size = (out / "images.u8").stat().st_size
    assert size == n * 3 * 64 * 64
    before = _rss_anon_kib()
    loader = build_loader(tiny(out, "data.image_size=64", "data.batch_size=100"), CPU)
    total, peak = 0, 0
    for x, _ in loader.epoch(0):
        total += x.shape[0]
        peak = max(peak, _rss_anon_kib() - before)
        del x
    assert total == n
    # The process never holds the dataset: only a few batches (100 x 49 KB as float: 5 MB each).
    assert peak * 1024 < size / 4, f"anonymous memory grew by {peak / 1024:.0f} MiB for a {size / 2**20:.0f} MiB set"
