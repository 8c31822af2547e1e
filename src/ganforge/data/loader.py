"""Batches for training: a seeded order per epoch, decoding in workers, flips and scaling on the device.

Two ways to fill a batch, chosen by the source:

- files (folder, zip): a :class:`torch.utils.data.DataLoader` decodes them in worker processes (as many
  as the cores available by default), with the configured prefetch factor and persistent workers, and
  pinned memory when training on CUDA;
- arrays (named sets in memory, prepared datasets memory-mapped or on the GPU): ``get_batch`` reads a
  whole batch of rows at once, one batch ahead in a background thread.

Either way the order depends only on ``(seed, epoch)``, broken files are replaced by the next good one
(an epoch keeps its size) and listed by :meth:`BatchLoader.drain_errors`, and building an iterator never
draws from the global torch RNG, so a resumed run sees exactly the batches the uninterrupted run would.
"""
from __future__ import annotations

import functools
import os
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ganforge.config import Config
from ganforge.data.errors import DataError
from ganforge.data.sources import check_decodable, open_source


class EpochSampler(Sampler[tuple[int, int]]):
    """A permutation that depends only on (seed, epoch), split across ranks, resumable mid-epoch.

    It yields ``(index, epoch)`` keys: the epoch travels with each key so that persistent workers (which
    hold their own copy of the dataset) draw the right random crops.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0
        self.batches = n // (batch_size * world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def indices(self) -> torch.Tensor:
        """This rank's image indices for the rest of the current epoch, in order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)[: self.batches * self.batch_size * self.world_size]
        mine = order[self.rank:: self.world_size]  # every rank gets its own share of every epoch
        return mine[self.start_batch * self.batch_size:]

    def __iter__(self):
        return iter([(i, self.epoch) for i in self.indices().tolist()])

    def __len__(self) -> int:
        return (self.batches - self.start_batch) * self.batch_size


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _collate(items):
    images = torch.stack([it[0] for it in items])
    labels = torch.tensor([it[1] for it in items], dtype=torch.long)
    bad = torch.tensor([it[2] for it in items], dtype=torch.long)
    return images, labels, bad


def _seed_worker(worker_id: int, hook: Callable[[], None] | None = None) -> None:
    # torch seeds each worker from the DataLoader's own generator; numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    if hook is not None:  # the trainer's: a SIGTERM/SIGINT to the process group must not kill a worker
        hook()


class BatchLoader:
    def __init__(self, dataset, cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1,
                 worker_init: Callable[[], None] | None = None):
        self.dataset = dataset
        self.device = device
        self.batch_size = cfg.data.batch_size
        self.hflip = cfg.data.hflip
        # The real batches' layout: the networks' (training.speed sets channels_last where they are).
        self.memory_format = torch.contiguous_format
        self.seed, self.rank = cfg.train.seed, rank
        self.source = cfg.data.source
        self.max_bad_fraction = cfg.data.max_bad_fraction
        self.timeout = cfg.data.timeout_seconds
        self._iterator = None  # the DataLoader's current iterator (its worker processes): close() stops them
        self.sampler = EpochSampler(len(dataset), self.batch_size, cfg.train.seed, rank, world_size)
        self.batches_per_epoch = self.sampler.batches
        if self.batches_per_epoch == 0:
            raise DataError(f"the dataset has {len(dataset)} images, fewer than one batch of "
                            f"{self.batch_size} x {world_size} process(es): lower data.batch_size")
        # Broken files found but not yet drained, keyed by index (names left out by the scan: by name).
        self._errors: list[tuple[int | str, str, str]] = [(n, n, why) for n, why in getattr(dataset, "scan_errors", [])]
        self._seen_bad: set[int] = set()
        self._reported: set[int | str] = set()
        for i, reason in check_decodable(dataset, cfg.data.max_bad_fraction):
            self._seen_bad.add(i)
            self._errors.append((i, dataset.name(i), reason))
        self.from_arrays = hasattr(dataset, "get_batch")
        if self.from_arrays:
            if cfg.data.on_gpu:
                dataset.to(device)
            self.loader = None
            self._prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganforge-batches")
        else:
            workers = default_workers() if cfg.data.num_workers < 0 else cfg.data.num_workers
            # Its own generator: starting an epoch's iterator draws a seed, and drawing it from the global
            # RNG would shift a resumed run's latents by one draw (resume would not be exact).
            self.loader_generator = torch.Generator()
            self.loader = DataLoader(
                dataset, batch_size=self.batch_size, sampler=self.sampler, num_workers=workers,
                collate_fn=_collate, pin_memory=device.type == "cuda", drop_last=True,
                prefetch_factor=cfg.data.prefetch_factor if workers else None,
                persistent_workers=bool(workers) and cfg.data.persistent_workers,
                worker_init_fn=functools.partial(_seed_worker, hook=worker_init) if workers else None, generator=self.loader_generator,
                # A worker stuck on a read that never returns (a hung network mount gives no error): after
                # this long with no batch, torch raises, and the run stops with a checkpoint (see epoch()).
                timeout=self.timeout if workers else 0,
            )
        # Flips are drawn from this generator on the device's side; its state is checkpointed.
        self.generator = torch.Generator().manual_seed(cfg.train.seed + 7919 * (rank + 1))

    @property
    def num_images(self) -> int:
        return len(self.dataset)

    @property
    def classes(self) -> list[str]:
        return list(getattr(self.dataset, "classes", []) or [])

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch, start_batch)
        if self.from_arrays:
            yield from self._array_batches()
            return
        # Worker seeds depend on (seed, epoch, rank) only: the same after a resume.
        self.loader_generator.manual_seed((self.seed * 1_000_003 + epoch) * 104_729 + self.rank)
        self._iterator = iter(self.loader)
        while True:
            try:
                images, labels, bad = next(self._iterator)
            except StopIteration:
                return
            except DataError as e:  # raised in a worker: torch wraps it in the worker's traceback
                raise DataError(_worker_message(e)) from None
            except RuntimeError as e:
                if not str(e).startswith("DataLoader timed out"):
                    raise
                raise DataError(
                    f"the data-loader workers delivered no batch for {self.timeout:g} s (data.timeout_seconds): "
                    f"reading {self.source} hangs without an error (a network mount or drive that stopped "
                    "answering?)") from None
            for j in bad[bad >= 0].tolist():
                if j not in self._seen_bad:
                    self._seen_bad.add(j)
                    self._errors.append((j, self.dataset.name(j), "could not be read or decoded"))
            self._check_bad_fraction()
            yield self.to_device(images), labels.to(self.device, non_blocking=True)

    def _check_bad_fraction(self) -> None:
        """Files that fail during training (deleted, a drive disconnected) are replaced and counted, up to
        ``data.max_bad_fraction`` of the set; beyond that the data has gone away: stop, saying so."""
        n = len(self.dataset)
        if len(self._seen_bad) <= self.max_bad_fraction * n:
            return
        examples = ", ".join(self.dataset.name(j) for j in sorted(self._seen_bad)[:3])
        raise DataError(f"{len(self._seen_bad)} of the {n} files of {self.source} can no longer be read or decoded "
                        f"(for example {examples}), more than data.max_bad_fraction={self.max_bad_fraction:g}: the "
                        "data changed or went away during training (a disconnected drive or network mount?)")

    def _array_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.sampler.indices()
        chunks = order.split(self.batch_size)
        pending = self._prefetch.submit(self.dataset.get_batch, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            images, labels = pending.result()
            if k + 1 < len(chunks):  # read the next batch while this one trains
                pending = self._prefetch.submit(self.dataset.get_batch, chunks[k + 1])
            if self.device.type == "cuda" and not images.is_cuda:
                images = images.pin_memory()
            yield self.to_device(images), labels.to(self.device, non_blocking=True)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        if self.hflip > 0:
            flip = torch.rand(x.shape[0], generator=self.generator) < self.hflip
            flip = flip.to(self.device)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        return x.contiguous(memory_format=self.memory_format)

    def close(self, at_once: bool = False) -> None:
        """Stop the worker processes (and the batch-reading thread); ``at_once`` when the run stops early
        (its data went away, a stop signal): workers are killed, even one stuck reading a dead mount.

        Workers ignore SIGTERM (:func:`ganforge.training.signals.ignore_stop_signals`), so one left
        running would make the interpreter's exit wait for it forever: every run ends by calling this."""
        if self.from_arrays:
            self._prefetch.shutdown(wait=not at_once, cancel_futures=True)
            return
        iterator, self._iterator = self._iterator, None
        if getattr(self.loader, "_iterator", None) is iterator:  # persistent workers: the DataLoader's own
            self.loader._iterator = None
        if iterator is not None:
            _stop_workers(iterator, at_once)

    def drain_errors(self) -> list[tuple[str, str]]:
        """Files found broken (or left out) since the last call, as ``(name, reason)`` pairs."""
        errors, self._errors = self._errors, []
        self._reported.update(key for key, _, _ in errors)
        return [(name, reason) for _, name, reason in errors]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "seen_bad": sorted(self._seen_bad),
                "reported": [str(k) if isinstance(k, str) else int(k) for k in self._reported],
                "pending": [[k, name, reason] for k, name, reason in self._errors]}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        # What the interrupted run already listed in data_errors.txt is not listed twice, and what it
        # had found but not yet listed is listed now.
        pending = [tuple(e) for e in state.get("pending", [])]
        known = set(state.get("reported", [])) | {e[0] for e in pending}
        self._errors = pending + [e for e in self._errors if e[0] not in known]
        self._reported |= set(state.get("reported", []))
        self._seen_bad |= set(state.get("seen_bad", []))


def _worker_message(e: DataError) -> str:
    """A worker's :class:`DataError` message without the traceback torch wraps it in."""
    text = str(e)
    marker = f"{DataError.__module__}.{DataError.__qualname__}: "
    return text.rsplit(marker, 1)[-1].strip() if marker in text else text


def _stop_workers(iterator, at_once: bool) -> None:
    """Shut down a DataLoader iterator's worker processes; kill those that do not stop (or all, ``at_once``)."""
    workers = list(getattr(iterator, "_workers", []))
    if at_once:
        if getattr(iterator, "_worker_pids_set", False):
            # torch's SIGCHLD handler would report the killed workers as a crash: take them off its list first.
            from torch.utils.data._utils import signal_handling
            signal_handling._remove_worker_pids(id(iterator))
            iterator._worker_pids_set = False
        for w in workers:
            if w.is_alive():
                w.kill()
        for w in workers:
            w.join(timeout=5)
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()  # waits a few seconds per worker that does not stop, then gives up on it
    for w in workers:
        if w.is_alive():
            w.kill()
            w.join(timeout=5)


def build_loader(cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1,
                 worker_init: Callable[[], None] | None = None) -> BatchLoader:
    """The batches of ``data.source`` for this rank; ``worker_init`` runs first in every worker process
    (the trainer passes :func:`ganforge.training.signals.ignore_stop_signals`)."""
    dataset = open_source(cfg)
    if hasattr(dataset, "check_config"):  # a prepared dataset: made at one size, channels and crop
        dataset.check_config(cfg)
    classes = list(getattr(dataset, "classes", []) or [])
    if cfg.model.num_classes and cfg.data.labels and classes and len(classes) != cfg.model.num_classes:
        raise DataError(f"model.num_classes={cfg.model.num_classes} but {cfg.data.source} has {len(classes)} "
                        f"classes ({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}): "
                        f"set model.num_classes={len(classes)}")
    return BatchLoader(dataset, cfg, device, rank, world_size, worker_init=worker_init)
