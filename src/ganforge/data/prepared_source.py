"""Reading a prepared dataset (``ganforge prepare``'s output): the manifest and the images' rows.

The format and how it is written are described in :mod:`ganforge.data.prepared`; this module only reads
it, so that opening a source (:mod:`ganforge.data.sources`) does not depend on the code that writes one.

Rows are read with positioned reads of the file, not through a memory map: a mapped page past the end of a
file that shrank (overwritten, cut off, a drive that went away) kills the reading process with SIGBUS, with
no chance to save, and no check before the read can close that window; a read that comes up short is an
error the run can stop on.  The operating system's page cache keeps repeated reads as cheap.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ganforge.config import Config
from ganforge.data.errors import DataError

FORMAT = "ganforge-prepared-1"
MANIFEST = "manifest.json"
IMAGES = "images.u8"
LABELS = "labels.npy"


def is_prepared(path: Path) -> bool:
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_manifest(path: Path) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


class PreparedSource(torch.utils.data.Dataset):
    """A prepared dataset; ``get_batch`` reads a batch of rows, in file order, with one read per run of
    neighbouring rows."""

    def __init__(self, path: Path, cfg: Config):
        self.path = Path(path)
        self.location = str(self.path)
        m = read_manifest(self.path)
        self.manifest = m
        size, channels, count = int(m["size"]), int(m["channels"]), int(m["count"])
        expected = count * channels * size * size
        actual = (self.path / IMAGES).stat().st_size if (self.path / IMAGES).is_file() else -1
        if actual != expected:
            raise DataError(f"{self.path / IMAGES} holds {actual} bytes but the manifest promises {expected} "
                            f"({count} images); the dataset is damaged: run ganforge prepare again")
        self.expected_bytes = expected
        n = min(count, cfg.data.limit) if cfg.data.limit else count
        self.count = n
        self.row_shape = (channels, size, size)
        self.row_bytes = channels * size * size
        self.labels_t = torch.from_numpy(np.load(self.path / LABELS)[:n].astype(np.int64))
        self.classes = list(m.get("classes") or []) if cfg.data.labels else []
        self.on_device: torch.Tensor | None = None

    def check_config(self, cfg: Config) -> None:
        """Whether training with ``cfg`` can use these images as they are; the error says what to set.
        (Opening needs no matching config, so that tools can read the manifest of any prepared set.)"""
        size, channels = int(self.manifest["size"]), int(self.manifest["channels"])
        if (size, channels) != (cfg.data.image_size, cfg.data.channels):
            raise DataError(
                f"{self.path} was prepared at {size}x{size} with {channels} channel(s), but the config asks for "
                f"{cfg.data.image_size}x{cfg.data.image_size} with {cfg.data.channels}: set data.image_size={size} "
                f"data.channels={channels}, or run ganforge prepare again with --size {cfg.data.image_size} "
                f"--channels {cfg.data.channels}")
        if cfg.data.crop == "random":
            raise DataError(f"{self.path} holds centre-cropped images, so data.crop=random cannot be applied: "
                            "set data.crop=center, or train from the original images for random crops")
        if cfg.data.labels and not self.manifest.get("classes"):
            raise DataError(f"data.labels=true but {self.path} was prepared without labels: run ganforge prepare "
                            "again with --labels")

    def __len__(self) -> int:
        return self.count

    def name(self, i: int) -> str:
        return f"{self.path.name}[{i}]"

    def _changed(self, why: str) -> DataError:
        return DataError(f"{self.path / IMAGES} changed during training ({why}): the prepared dataset was "
                         "overwritten, truncated or went away (a disconnected drive or network mount?); "
                         "restore it or run ganforge prepare again")

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Images ``rows`` (sorted, each in range) as one uint8 array; a file that shrank or went away is a
        :class:`DataError`."""
        out = np.empty((len(rows), *self.row_shape), dtype=np.uint8)
        if not len(rows):
            return out
        flat = memoryview(out).cast("B")
        # Runs of neighbouring rows are read in one go (all of them, when the whole set is held).
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        try:
            with open(self.path / IMAGES, "rb", buffering=0) as f:
                for first, last in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
                    f.seek(int(rows[first]) * self.row_bytes)
                    view = flat[first * self.row_bytes:last * self.row_bytes]
                    while view:
                        got = f.readinto(view)
                        if not got:
                            size = os.fstat(f.fileno()).st_size
                            raise self._changed(f"{size} bytes, {self.expected_bytes} expected")
                        view = view[got:]
        except OSError as e:
            raise self._changed(e.strerror or str(e)) from None
        return out

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key
        return torch.from_numpy(self.read_rows(np.array([i]))[0]), int(self.labels_t[i]), -1

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.on_device is not None:
            return self.on_device[indices.to(self.on_device.device)], self.labels_t[indices]
        # Rows in file order (sequential reads when streaming from disk), then back in the sampler's order.
        idx = indices.numpy()
        order = np.argsort(idx, kind="stable")
        rows = self.read_rows(idx[order])
        out = np.empty_like(rows)
        out[order] = rows
        return torch.from_numpy(out), self.labels_t[indices]

    def to(self, device: torch.device) -> "PreparedSource":
        """Hold the whole dataset in ``device`` memory (data.on_gpu) when it fits with room to spare."""
        if device.type != "cuda":
            return self
        free, _ = torch.cuda.mem_get_info(device)
        nbytes = self.count * self.row_bytes
        if nbytes > free // 2:
            print(f"ganforge: data.on_gpu: {nbytes / 2**30:.1f} GiB does not fit in half the free GPU "
                  f"memory ({free / 2**30:.1f} GiB); streaming from {self.path} instead", flush=True)
            return self
        return self.hold(device)

    def hold(self, device: torch.device) -> "PreparedSource":
        """Copy every image to ``device`` and serve batches from there, with no check of its free memory
        (``to`` checks first; the tests hold a set on the CPU to run the same batch order without a GPU)."""
        self.on_device = torch.from_numpy(self.read_rows(np.arange(self.count))).to(device)
        return self


def verify(path: Path) -> bool:
    """Whether ``images.u8`` still matches the checksum in the manifest (reads the whole file)."""
    digest = hashlib.sha256()
    with open(Path(path) / IMAGES, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest() == read_manifest(path)["checksum"]
