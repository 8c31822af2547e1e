"""The recipe on a GPU: mixed precision by compute capability, saving by time, a batch that fits.

The recipe (:mod:`ganforge.recipe`) chooses a model and its training from the data; on a CUDA device
:func:`on_gpu` then makes the choices that depend on the GPU itself, each with its reason:

- **Mixed precision by compute capability** (:func:`amp_for`): bf16 from Ampere on (8.0: A100, 8.6,
  8.9, 9.0: H100, H200), whose tensor cores run bfloat16 natively and which keeps float32's range, so
  no loss scaling; fp16 with a gradient scaler per network before it (7.0 V100, 7.5 T4), whose tensor
  cores run float16 but which would only emulate bfloat16, slower than float32; none before Volta (no
  tensor cores).
- **Saving by time** (``train.save_every_minutes``): a GPU trains a small set's short epoch in seconds,
  and a checkpoint, a grid and a report refresh at each of several hundred epoch ends would leave it
  idle; epoch ends save at most every ``SAVE_EVERY_MINUTES``, and the run's end always does.  The
  samples and the report still follow the run: a grid (which refreshes the report) every
  ``1 / SAMPLES_PER_RUN`` of its steps (``train.sample_every``).
- **A batch that fits** (:func:`fit`): the memory a step needs (:func:`ganforge.nets.measure.training_memory`)
  must stay under ``HEADROOM`` of the GPU's memory, the rest left for what the estimate leaves out; the
  batch is halved until it does, down to ``MIN_BATCH``, then the width.  The recipe's batch is kept
  where it fits: a larger one was not measured better.

Every function takes the GPU as plain values (:class:`GpuFacts`), so the rules are tested with made-up
devices; :func:`read_gpu` reads a real one.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from ganforge import config as C
from ganforge.nets.measure import TrainingMemory, format_bytes, training_memory

#: Compute capabilities: Ampere's tensor cores run bfloat16; Volta's were the first tensor cores.
AMPERE, VOLTA = (8, 0), (7, 0)
#: Epoch ends write a checkpoint, a grid and refresh the report at most this often on a GPU.
SAVE_EVERY_MINUTES = 10
#: A fixed-noise grid, and with it a report refresh, every 1/20 (5%) of the run's steps.
SAMPLES_PER_RUN = 20
#: A step's predicted memory may use at most this share of the GPU's: the rest is for what the
#: estimate leaves out (CUDA's context, cuDNN's workspaces, the allocator's cache, augmentation, the
#: gradients alive during the backward pass).  Measured on a CPU, a real step's memory per image was
#: 0.95x (the recipe's FastGAN) to 1.36x (DCGAN at 64 px) the estimate (benchmarks/memory_estimate.py).
HEADROOM = 0.6
#: The smallest batch the plan goes down to before it narrows the networks, and the narrowest width.
MIN_BATCH, MIN_WIDTH = 8, 8


@dataclass(frozen=True)
class GpuFacts:
    """What the plan needs to know of a GPU."""

    name: str
    capability: tuple[int, int]  # (major, minor), as torch.cuda.get_device_capability gives it
    total_memory: int  # bytes

    def __str__(self) -> str:
        return (f"{self.name} (compute capability {self.capability[0]}.{self.capability[1]}, "
                f"{format_bytes(self.total_memory)})")


def read_gpu(device: str | torch.device = "cuda") -> GpuFacts:
    """The facts of a real CUDA device (``cuda``: the current one)."""
    if not torch.cuda.is_available():
        raise C.ConfigError(f"train.device={device} asks for a CUDA GPU, and none is available here: use "
                            "train.device=auto (a GPU when there is one) or cpu")
    props = torch.cuda.get_device_properties(torch.device(device))
    return GpuFacts(props.name, (props.major, props.minor), props.total_memory)


def amp_for(gpu: GpuFacts) -> tuple[str, str]:
    """``train.amp`` for ``gpu`` and why."""
    if gpu.capability >= AMPERE:
        return "bf16", (f"{gpu.name} has compute capability {gpu.capability[0]}.{gpu.capability[1]} (Ampere or "
                        "later): its tensor cores run bfloat16, which keeps float32's range, so no loss scaling")
    if gpu.capability >= VOLTA:
        return "fp16", (f"{gpu.name} has compute capability {gpu.capability[0]}.{gpu.capability[1]} (before "
                        "Ampere): its tensor cores run float16 and would only emulate bfloat16, slower than "
                        "float32; fp16 with a gradient scaler per network keeps small gradients from underflowing")
    return "off", (f"{gpu.name} has compute capability {gpu.capability[0]}.{gpu.capability[1]} (before Volta): "
                   "no tensor cores, so half precision would save memory but not time")


def fits(predicted: int, total: int) -> bool:
    """Whether a step of ``predicted`` bytes leaves the headroom on a device of ``total`` bytes."""
    return predicted <= HEADROOM * total


def memory_warning(predicted: int, total: int, where: str) -> str | None:
    """A warning when a step of ``predicted`` bytes would not fit in ``where``'s ``total`` bytes, or
    would leave less than the headroom; None when it fits."""
    if predicted > total:
        return (f"a training step needs about {format_bytes(predicted)}, more than the {format_bytes(total)} of "
                f"{where}: the run would run out of memory; lower data.batch_size (or the width, model.ngf and "
                "model.ndf), or use train.amp=bf16 or fp16 on a GPU")
    if not fits(predicted, total):
        return (f"a training step needs about {format_bytes(predicted)} of the {format_bytes(total)} of {where}, "
                f"over {HEADROOM:.0%}: the estimate leaves out the device's context, scratch space and "
                "augmentation, so the run may run out of memory; a smaller data.batch_size is safer")
    return None


def system_memory() -> int | None:
    """The machine's RAM in bytes (what a CPU run's memory is compared with); None where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class Fit:
    """The batch and widths :func:`fit` chose, and the step's predicted bytes with them."""

    batch: int
    ngf: int
    ndf: int
    predicted: int
    fits: bool


def fit(cfg: C.Config, gpu: GpuFacts, amp: str, fixed: set[str] = frozenset(),
        measure=training_memory) -> Fit:
    """The largest batch up to ``cfg``'s (halving it) whose step fits ``gpu`` with the headroom; below
    ``MIN_BATCH`` the networks are halved in width instead.  Keys in ``fixed`` (given by the user) are
    not changed, and a given batch leaves the widths alone too.  ``measure(cfg)`` gives a config's
    :class:`TrainingMemory`."""
    batch, ngf, ndf = cfg.data.batch_size, cfg.model.ngf, cfg.model.ndf
    memory: TrainingMemory = measure(cfg)
    while True:
        predicted = memory.per_step(batch, amp)
        if fits(predicted, gpu.total_memory):
            return Fit(batch, ngf, ndf, predicted, True)
        if "data.batch_size" in fixed:  # the user's batch: say it does not fit, change no network under it
            return Fit(batch, ngf, ndf, predicted, False)
        if batch // 2 >= MIN_BATCH:
            batch //= 2
            continue
        narrower = {k for k in ("model.ngf", "model.ndf") if k not in fixed and cfg.get(k) // 2 >= MIN_WIDTH}
        if not narrower:
            return Fit(batch, ngf, ndf, predicted, False)
        ngf, ndf = (ngf // 2 if "model.ngf" in narrower else ngf), (ndf // 2 if "model.ndf" in narrower else ndf)
        cfg = C.from_dict(C.apply_overrides(cfg.to_dict(), [f"model.ngf={ngf}", f"model.ndf={ndf}"]))
        memory = measure(cfg)


def on_gpu(chosen: list[str], why: list[str], given: dict[str, object], gpu: GpuFacts,
           images: int) -> tuple[list[str], list[str]]:
    """The recipe's ``chosen`` (``key=value``) and ``why`` with the GPU's own choices made: mixed
    precision, saving by time, and a batch (and width) that fits; a key in ``given`` wins.  A choice
    this replaces (the batch, the epochs that follow it) is taken out of both lists."""
    settings = {**dict(c.split("=", 1) for c in chosen), **{k: str(v) for k, v in given.items()}}
    picks: list[tuple[str, object, str]] = []
    cfg = C.from_dict(C.apply_overrides({}, [f"{k}={v}" for k, v in settings.items()]))
    amp, reason = amp_for(gpu)
    picks.append(("train.amp", amp, reason))
    if "train.amp" in given and cfg.train.amp != "auto":
        amp = cfg.train.amp
    picks.append(("train.save_every_minutes", SAVE_EVERY_MINUTES,
                  f"a GPU trains a short epoch in seconds: a checkpoint, a grid and a report refresh at every "
                  f"epoch end would leave it idle, so epoch ends save at most every {SAVE_EVERY_MINUTES} minutes "
                  "(and the run's end always)"))
    chosen_fit = fit(cfg, gpu, amp, fixed=set(given))
    batch, epochs = chosen_fit.batch, cfg.train.epochs
    on = f"{format_bytes(chosen_fit.predicted)} per step ({amp}) of the {format_bytes(gpu.total_memory)} of {gpu.name}"
    if batch != cfg.data.batch_size:
        if "train.epochs" not in given:
            epochs = max(5, math.ceil(cfg.train.epochs * batch / cfg.data.batch_size))
        picks.append(("data.batch_size", batch, f"the largest batch up to {cfg.data.batch_size} whose step fits: {on}, "
                                                f"under {HEADROOM:.0%}" if chosen_fit.fits else
                                                f"as small as the plan goes, and still {on}"))
        picks.append(("train.epochs", epochs, f"as many steps as at batch {cfg.data.batch_size}"))
    for key, width in (("model.ngf", chosen_fit.ngf), ("model.ndf", chosen_fit.ndf)):
        if width != cfg.get(key):
            picks.append((key, width, f"narrower than {cfg.get(key)}, as batch {batch} alone does not fit: {on}"))
    steps = cfg.train.max_steps or epochs * max(images // batch, 1) // cfg.train.d_steps
    every = max(steps // SAMPLES_PER_RUN, 1)
    every = every // 50 * 50 or every  # a round number of steps
    picks.append(("train.sample_every", every, f"a grid, and with it a report refresh, every {every:,} of the run's "
                                               f"{steps:,} steps (about {100 // SAMPLES_PER_RUN}%)"))
    replaced = {key for key, _, _ in picks if key not in given}
    chosen = [c for c in chosen if c.split("=", 1)[0] not in replaced]
    why = [w for w in why if w.split("=", 1)[0] not in replaced or w.endswith("(given)")]
    why.append(f"on {gpu}:")
    for key, value, reason in picks:
        if key in given:
            why.append(f"{key}={cfg.get(key):g} (given)" if isinstance(cfg.get(key), float) else
                       f"{key}={cfg.get(key)} (given)")  # as the config reads it: train.amp=off, not False
        else:
            chosen.append(f"{key}={value}")
            why.append(f"{key}={value}: {reason}")
    if chosen_fit.fits and batch == cfg.data.batch_size:
        why.append(f"memory: {on}, under {HEADROOM:.0%}: data.batch_size={batch} fits")
    elif not chosen_fit.fits:
        why.append("memory: " + memory_warning(chosen_fit.predicted, gpu.total_memory, gpu.name))
    return chosen, why
