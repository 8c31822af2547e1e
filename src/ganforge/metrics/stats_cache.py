"""Real-data features, computed once per (dataset, resolution, extractor) and cached on disk.

The cache lives in ``$GANFORGE_CACHE/stats/`` (default ``~/.cache/ganforge/stats/``); a file is named
after the dataset, resolution, channels, extractor and sample count, and keyed by a hash that also
covers the files' names, sizes and modification times, so editing the dataset invalidates it.  Files
are written atomically and read with ``allow_pickle=False``.  The features themselves are kept (not only
their mean and covariance) because KID and precision/recall need them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ganforge.config import Config
from ganforge.metrics.features import extract_features
from ganforge.storage import atomic_write_bytes

#: Real images are drawn with this seed, so every evaluation of a dataset uses the same ones.
REAL_SUBSET_SEED = 0


def cache_dir() -> Path:
    return Path(os.path.expanduser(os.environ.get("GANFORGE_CACHE") or "~/.cache/ganforge")) / "stats"


def eval_data_config(cfg: Config) -> Config:
    """The data settings real images are read with for evaluation: the run's, but centre-cropped."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, crop="center", hflip=0.0))


def _source_fingerprint(source: str) -> dict:
    """What identifies a dataset's content cheaply: file names, sizes and times, or a named set's name."""
    from ganforge.data.sources import NAMED
    if source in NAMED:
        return {"named": source}
    path = Path(os.path.expanduser(source))
    if not path.exists() and ":" in source:  # zip:inner/dir and similar specs: the file before the colon
        path = Path(os.path.expanduser(source.split(":", 1)[0]))
    if path.is_file():
        st = path.stat()
        return {"file": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "spec": source}
    if path.is_dir():
        h = hashlib.sha256()
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for f in sorted(filenames):
                st = os.stat(os.path.join(dirpath, f))
                h.update(f"{os.path.relpath(os.path.join(dirpath, f), path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"dir": str(path.resolve()), "listing": h.hexdigest()}
    return {"spec": source}


def cache_key(cfg: Config, extractor, n: int) -> tuple[str, dict]:
    d = cfg.data
    identity = {"source": _source_fingerprint(d.source), "image_size": d.image_size, "channels": d.channels,
                "background": list(d.background), "limit": d.limit, "extractor": extractor.name,
                "weights": getattr(extractor, "weights_id", ""), "n": n, "subset_seed": REAL_SUBSET_SEED,
                "format": 1}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(d.source.rstrip("/")).name or "data")[:40]
    name = f"{slug}-{d.image_size}px-{d.channels}c-{extractor.name}-n{n}-{digest}.npz"
    return name, identity


def _load(path: Path, logits: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return (z["features"], z["logits"]) if logits else z["features"]
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache file (or one without the logits asked for) is recomputed, not trusted


def real_subset(count: int, n: int) -> list[int]:
    """Which ``n`` of ``count`` real images evaluation scores against (all of them when fewer), in order:
    drawn with a fixed seed, so every evaluation of a set uses the same ones.  Not the first ``n``: a
    folder is read in name order, and its first files are rarely a sample of it (class folders, or
    emoji named by code point, whose first thousand hold every flag and few faces)."""
    if n >= count:
        return list(range(count))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(REAL_SUBSET_SEED))
    return order[:n].sort().values.tolist()


def real_batches(cfg: Config, n: int, batch_size: int = 50, dataset=None) -> Iterator[torch.Tensor]:
    """The ``n`` real images of ``cfg.data`` that evaluation uses (:func:`real_subset`), centre-cropped,
    in batches as the dataset gives them."""
    cfg = eval_data_config(cfg)
    if dataset is None:
        from ganforge.data import open_source
        dataset = open_source(cfg)
    indices = real_subset(len(dataset), n)
    n = len(indices)
    for i in range(0, n, batch_size):
        yield torch.stack([dataset[j][0] for j in indices[i:i + batch_size]])


def real_features(cfg: Config, extractor, n: int, batch_size: int = 50, dataset=None,
                  use_cache: bool = True, logits: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Features of ``n`` real images of ``cfg.data`` (all of them when fewer), cached on disk under the
    requested ``n``, so a cache hit reads no image at all.

    With ``logits``, ``(features, logits)``: what the Inception Score of a set of images (not a
    generator's) needs; the cache file then holds both.
    """
    cfg = eval_data_config(cfg)
    name, identity = cache_key(cfg, extractor, n)
    path = cache_dir() / name
    if use_cache and path.is_file():
        cached = _load(path, logits)
        if cached is not None:
            return cached
    features, all_logits = extract_features(extractor, real_batches(cfg, n, batch_size, dataset))
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        extra = {"logits": all_logits.astype(np.float32)} if logits else {}  # only when asked: they are large
        np.savez(buf, features=features.astype(np.float32), identity=np.array(json.dumps(identity)), **extra)
        atomic_write_bytes(path, buf.getvalue())
    return (features, all_logits) if logits else features
