"""Prepared datasets: every image decoded and resized once, stored as one raw uint8 array file.

``ganforge prepare SRC OUT --size 64`` writes into the folder OUT:

- ``images.u8``: the images, raw uint8, shape (count, channels, size, size), C order;
- ``labels.npy``: one int64 class index per image (all 0 without labels);
- ``manifest.json``: format, source, size, channels, count, classes, the SHA-256 of ``images.u8``, the
  files skipped as broken, and the decoding settings.  It is written last: a folder without it is an
  interrupted preparation, never mistaken for a finished one.

Training from OUT (``--data OUT``) reads each batch's rows straight from the file with positioned reads
(:mod:`ganforge.data.prepared_source` says why not through a memory map): no decoding, no worker processes.
A dataset larger than RAM streams, the operating system's page cache keeping what fits; the process itself
only ever holds a batch.  With ``data.on_gpu=true`` on a CUDA device the whole array is copied to GPU
memory once when it fits.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from ganforge.config import Config
from ganforge.data.decode import BrokenImage
from ganforge.data.errors import DataError
from ganforge.data.loader import default_workers
from ganforge.data.prepared_source import (FORMAT, IMAGES, LABELS, MANIFEST, PreparedSource,  # noqa: F401
                                         is_prepared, read_manifest, verify)
from ganforge.data.sources import check_decodable, open_source


class _PrepareItems(torch.utils.data.Dataset):
    """One source image per item, or the reason it is broken (prepare skips those, training substitutes)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        if not hasattr(self.ds, "decode"):
            image, label, _ = self.ds[i]
            return i, image, label, ""
        try:
            return i, self.ds.decode(i), self.ds.labels[i], ""
        except BrokenImage as e:
            return i, None, -1, str(e) or "could not be decoded"


def prepare(cfg: Config, out: Path, workers: int = -1, progress: bool = True) -> dict:
    """Decode ``cfg.data.source`` once at ``cfg.data.image_size`` into the prepared dataset ``out``."""
    from tqdm import tqdm


    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} already exists and is not an empty folder; choose a new OUT folder "
                        "(ganforge prepare never overwrites)")
    ds = open_source(cfg)
    if isinstance(ds, PreparedSource):
        raise DataError(f"{cfg.data.source} is already a prepared dataset")
    check_decodable(ds, cfg.data.max_bad_fraction)
    out.mkdir(parents=True, exist_ok=True)
    workers = default_workers() if workers < 0 else workers
    loader = torch.utils.data.DataLoader(_PrepareItems(ds), batch_size=64, num_workers=workers,
                                         collate_fn=list, shuffle=False)
    digest = hashlib.sha256()
    labels, skipped = [], []
    t0 = time.perf_counter()
    with open(out / IMAGES, "wb") as f, tqdm(total=len(ds), unit="img", disable=not progress,
                                            dynamic_ncols=True) as bar:
        for batch in loader:
            for i, image, label, reason in batch:
                if image is None:
                    skipped.append([ds.name(i), reason])
                    continue
                data = image.contiguous().numpy().tobytes()
                f.write(data)
                digest.update(data)
                labels.append(label)
            bar.update(len(batch))
    if not labels:
        raise DataError(f"no image in {cfg.data.source} could be decoded; nothing was prepared")
    np.save(out / LABELS, np.asarray(labels, dtype=np.int64))
    manifest = {
        "format": FORMAT,
        "source": cfg.data.source,
        "size": cfg.data.image_size,
        "channels": cfg.data.channels,
        "count": len(labels),
        "dtype": "uint8",
        "layout": "NCHW",
        "classes": list(getattr(ds, "classes", []) or []),
        "checksum": "sha256:" + digest.hexdigest(),
        "skipped": skipped,
        "background": list(cfg.data.background),
        "crop": "center",
        "limit": cfg.data.limit,
        "seconds": round(time.perf_counter() - t0, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(out / MANIFEST)
    return manifest
