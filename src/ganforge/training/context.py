"""The callback contract: what the training loop calls, and the one object a callback may use.

A callback is any object with some of the hooks below; each receives a :class:`RunContext` first.
Everything a run does besides training (TensorBoard, the report, evaluation, diagnostics, a user's own
callback given to ``ganforge.train(cfg, callbacks=[...])``) goes through this contract, so the loop
(:meth:`ganforge.training.trainer.Trainer.fit`) stays short and a callback cannot reach into the
trainer's parts:

==================================  =========================================================
``on_start(run)``                   after the data is loaded and a resume restored, before step 1
``on_step(run, step)``              after every generator step (evaluation; ``run.add_to_log``)
``on_log(run, record)``             after each line of ``metrics.jsonl`` is written
``on_samples(run, path)``           after each fixed-noise grid is written (epoch ends, sample_every)
``on_epoch_end(run, epoch)``        after an epoch's grid and checkpoint (``epoch`` counts from 1)
``on_end(run)``                     after ``generator.pt`` and ``summary.json`` are written
==================================  =========================================================

A hook a callback does not define is not called (:class:`Hooks` finds the hooks once, when the run
starts).  Only the main process of a multi-GPU run writes files; every process calls every hook, and
``run.is_main`` says which one this is.
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from ganforge.config import Config
from ganforge.runfiles import RunDir

#: The hooks of the contract, in the order a run first calls them.
HOOKS = ("on_start", "on_step", "on_log", "on_samples", "on_epoch_end", "on_end")


class Callback(Protocol):
    """The full contract; a callback defines any subset of these methods."""

    def on_start(self, run: "RunContext") -> None: ...
    def on_step(self, run: "RunContext", step: int) -> None: ...
    def on_log(self, run: "RunContext", record: dict) -> None: ...
    def on_samples(self, run: "RunContext", path: Path) -> None: ...
    def on_epoch_end(self, run: "RunContext", epoch: int) -> None: ...
    def on_end(self, run: "RunContext") -> None: ...


def _read(name: str, doc: str) -> property:
    """A read-only view of the trainer's attribute ``name``."""
    return property(lambda self: getattr(self._trainer, name), doc=doc)


class RunContext:
    """What a callback may see and do during a run (it is handed this, never the trainer).

    - progress: ``progress`` (step, epoch, batch, images_seen, elapsed), ``is_main``, ``rank``,
      ``world_size``, ``device``, ``cfg`` (read it, do not change it);
    - run files: ``files`` (a :class:`~ganforge.runfiles.RunDir`), ``run_dir`` (its path),
      ``best_checkpoint()`` (the manifest's entry for ``checkpoints/best.pt``, or None);
    - sampling: ``sampling_generator()`` (the EMA copy when the run keeps one), ``fixed_noise``,
      ``fixed_labels``;
    - dataset facts: ``dataset`` (items ``(uint8 image, label, bad)``), ``num_images``;
    - actions: ``save_checkpoint(best=..., metric=...)`` (every process must call it together),
      ``add_summary(**values)`` (keys of ``summary.json``), ``add_to_log(**values)`` (keys of this step's
      ``metrics.jsonl`` line: a key added in ``on_step`` makes that step a log line), ``summary()``
      (what ``summary.json`` would say now).
    """

    def __init__(self, trainer):
        # The Trainer hands itself in (this module does not import it).  A weak reference: the trainer
        # holds this context, and a cycle would keep it (and its data loader's worker processes, which
        # ignore SIGTERM) alive until the garbage collector runs, or past the interpreter's exit.
        self._trainer = weakref.proxy(trainer)

    # ---------------------------------------------------------------- progress (read-only views)
    progress = _read("progress", "Step, epoch, batch, images_seen, elapsed (training.trainer.Progress).")
    is_main = _read("is_main", "Whether this process writes the run's files (rank 0).")
    rank = _read("rank", "This process's rank under torchrun (0 alone).")
    world_size = _read("world_size", "How many processes train together.")
    device = _read("device", "The training device.")
    cfg = _read("cfg", "The run's config: read it, do not change it.")

    # ---------------------------------------------------------------- run files
    @property
    def run_dir(self) -> Path:
        return Path(self._trainer.run_dir)

    @property
    def files(self) -> RunDir:
        return RunDir(self._trainer.run_dir)

    def best_checkpoint(self) -> dict | None:
        return self._trainer.checkpoints.manifest().get("best")

    # ---------------------------------------------------------------- sampling
    def sampling_generator(self) -> torch.nn.Module:
        return self._trainer.sampling_generator()

    fixed_noise = _read("fixed_noise", "The latents of the fixed-noise grids.")
    fixed_labels = _read("fixed_labels", "Their class labels (None for an unconditional run).")

    # ---------------------------------------------------------------- dataset facts
    @property
    def dataset(self):
        loader = self._trainer.loader
        return loader.dataset if loader is not None else None

    @property
    def num_images(self) -> int | None:
        loader = self._trainer.loader
        return loader.num_images if loader is not None else None

    # ---------------------------------------------------------------- actions
    def save_checkpoint(self, best: bool = False, metric: float | None = None) -> Path | None:
        return self._trainer.save_checkpoint(best=best, metric=metric)

    def add_summary(self, **values: Any) -> None:
        self._trainer.summary_extra.update(values)

    def add_to_log(self, **values: Any) -> None:
        self._trainer.log_extra.update(values)

    def summary(self, status: str = "running") -> dict:
        return self._trainer.summary(status)


class Hooks:
    """A run's callbacks by hook: ``hooks("on_step", step)`` calls every callback that defines
    ``on_step``, in order, with the run's context first.  Which hooks a callback has is looked up once."""

    def __init__(self, callbacks: list, context: RunContext):
        self.context = context
        self._methods: dict[str, list[Callable]] = {h: [] for h in HOOKS}
        for cb in callbacks:
            for h in HOOKS:
                method = getattr(cb, h, None)
                if method is not None:
                    self._methods[h].append(method)

    def __call__(self, hook: str, *args: Any) -> None:
        for method in self._methods[hook]:
            method(self.context, *args)
