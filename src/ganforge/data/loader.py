"""Batches for training: a seeded order per epoch, decoding in workers, flips and scaling on the device."""
from __future__ import annotations

import os
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from ganforge.config import Config
from ganforge.data.sources import DataError, open_source


class EpochSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch), split across ranks, resumable mid-epoch."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0
        self.batches = n // (batch_size * world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)[: self.batches * self.batch_size * self.world_size]
        mine = order[self.rank:: self.world_size]  # every rank gets its own share of every epoch
        return iter(mine[self.start_batch * self.batch_size:].tolist())

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


class BatchLoader:
    def __init__(self, dataset, cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1):
        self.dataset = dataset
        self.device = device
        self.batch_size = cfg.data.batch_size
        self.hflip = cfg.data.hflip
        self.sampler = EpochSampler(len(dataset), self.batch_size, cfg.train.seed, rank, world_size)
        self.batches_per_epoch = self.sampler.batches
        if self.batches_per_epoch == 0:
            raise DataError(f"the dataset has {len(dataset)} images, fewer than one batch of "
                            f"{self.batch_size} x {world_size} process(es): lower data.batch_size")
        in_memory = not hasattr(dataset, "decode")
        workers = 0 if in_memory else (default_workers() if cfg.data.num_workers < 0 else cfg.data.num_workers)
        self.loader = DataLoader(
            dataset, batch_size=self.batch_size, sampler=self.sampler, num_workers=workers,
            collate_fn=_collate, pin_memory=device.type == "cuda", drop_last=True,
            prefetch_factor=cfg.data.prefetch_factor if workers else None,
            persistent_workers=False,
            # Its own generator: starting an epoch's iterator draws a seed, and drawing it from the
            # global RNG would shift a resumed run's latents by one draw (resume would not be exact).
            generator=torch.Generator().manual_seed(cfg.train.seed + 104729 * (rank + 1)),
        )
        # Flips are drawn from this generator on the device's side; its state is checkpointed.
        self.generator = torch.Generator().manual_seed(cfg.train.seed + 7919 * (rank + 1))
        self._errors: list[tuple[str, str]] = []
        self._seen_bad: set[int] = set()

    @property
    def num_images(self) -> int:
        return len(self.dataset)

    @property
    def classes(self) -> list[str]:
        return list(getattr(self.dataset, "classes", []) or [])

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch, start_batch)
        if hasattr(self.dataset, "epoch"):
            self.dataset.epoch = epoch
        for images, labels, bad in self.loader:
            for j in bad[bad >= 0].tolist():
                if j not in self._seen_bad:
                    self._seen_bad.add(j)
                    self._errors.append((self.dataset.name(j), "could not be decoded"))
            yield self.to_device(images), labels.to(self.device, non_blocking=True)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        if self.hflip > 0:
            flip = torch.rand(x.shape[0], generator=self.generator) < self.hflip
            flip = flip.to(self.device)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        return x

    def drain_errors(self) -> list[tuple[str, str]]:
        errors, self._errors = self._errors, []
        return errors

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "seen_bad": sorted(self._seen_bad)}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._seen_bad = set(state.get("seen_bad", []))


def build_loader(cfg: Config, device: torch.device, rank: int = 0, world_size: int = 1) -> BatchLoader:
    return BatchLoader(open_source(cfg), cfg, device, rank, world_size)
