"""Making the same training step run faster: mixed precision, channels_last, torch.compile, CUDA graphs.

None of these change the algorithm; each is a config switch (``train.amp``, ``train.compile``,
``train.channels_last``, ``train.cuda_graphs``) whose ``auto`` setting depends on the device type and
was chosen by measurement (``benchmarks/throughput.py``, numbers in ``docs/speed.md``):

=============  =====================  ==========================================================
switch         auto on CUDA           auto on CPU / MPS
=============  =====================  ==========================================================
amp            bf16 from compute      off: without AMX, bf16 convolutions on a CPU are slower
               capability 8.0         than fp32
               (Ampere) on; fp16
               with GradScalers
               before (T4, V100)
compile        on                     on for runs long enough to pay back the compile time
                                      (see ``CPU_COMPILE_MIN_STEPS``); off on MPS
channels_last  on (tensor cores)      on on a CPU (oneDNN's native layout: no reorders per
                                      convolution); off on MPS
cudnn autotune on unless deterministic n/a
=============  =====================  ==========================================================

How the pieces attach to a run (:func:`accelerate`, called once by the trainer before its first step):

1. ``channels_last`` converts G and D in place (their state dicts are unchanged), and the loader hands
   out the real batches in the same layout, so a compiled D sees one memory layout for reals and fakes
   (two would compile it twice, and convert every real batch inside each convolution);
2. under ``torchrun`` the step's networks are wrapped in DistributedDataParallel
   (:mod:`ganforge.training.distributed`);
3. ``compile`` compiles *the step's* G and D only.  The trainer keeps the plain modules for
   sampling, checkpoints and metrics, so those never trigger recompilation and state dicts keep
   their usual keys.  Compiled and eager modules share the same parameters.
4. ``amp`` sets the step's ``autocast`` factory and, for fp16, one GradScaler per network
   (the two networks' gradients have unrelated scales).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn as nn

from ganforge.config import ConfigError, TrainConfig

#: On a CPU, compiling G and D costs about a minute (2 cores); it pays back only over many steps.
#: ``compile=auto`` compiles on a CPU when the run has at least this many steps left.
CPU_COMPILE_MIN_STEPS = 2000


@dataclass(frozen=True)
class SpeedSettings:
    """The resolved switches for one run on one device (no ``auto`` left)."""

    device_type: str
    amp: str  # off, bf16, fp16
    compile: bool
    channels_last: bool
    cudnn_benchmark: bool
    cuda_graphs: bool
    scale: str = ""  # under torchrun: processes, backend and effective batch

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)

    def describe(self) -> str:
        """The one line ``ganforge train`` prints."""
        on = lambda b: "on" if b else "off"  # noqa: E731
        parts = [f"amp {self.amp}", f"compile {on(self.compile)}", f"channels_last {on(self.channels_last)}"]
        if self.device_type == "cuda":
            parts += [f"cudnn autotune {on(self.cudnn_benchmark)}", f"cuda graphs {on(self.cuda_graphs)}"]
        return f"speed ({self.device_type}): " + ", ".join(parts) + (f"; {self.scale}" if self.scale else "")

    def to_dict(self) -> dict:
        return asdict(self)


#: The first compute capability with bf16 tensor cores (Ampere: A100 is 8.0).  Before it (T4 7.5, V100 7.0)
#: ``torch.cuda.is_bf16_supported()`` is still true (bf16 is emulated), but cuDNN has no fast bf16
#: convolutions there: those cards train in fp16 with loss scaling.
BF16_FROM_CAPABILITY = (8, 0)
#: The first with fp16 tensor cores (Volta); before it half precision saves memory but not time.
FP16_FROM_CAPABILITY = (7, 0)


def auto_amp(capability: tuple[int, int]) -> str:
    """``train.amp=auto`` on a CUDA device of compute ``capability`` (major, minor): bf16 from Ampere on,
    fp16 (with a GradScaler per network) from Volta, off before.  The recipe's GPU plan names the same."""
    if tuple(capability) >= BF16_FROM_CAPABILITY:
        return "bf16"
    return "fp16" if tuple(capability) >= FP16_FROM_CAPABILITY else "off"


def _bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"


def resolve(train: TrainConfig, device: torch.device, steps_left: int | None = None) -> SpeedSettings:
    """Turn the ``train.*`` switches into concrete settings for ``device``; refuse combinations that
    cannot work, saying what to change."""
    kind = device.type
    cuda = kind == "cuda"

    amp = train.amp
    if amp == "auto":
        amp = auto_amp(torch.cuda.get_device_capability(device)) if cuda else "off"
    if amp == "bf16" and not _bf16_supported(device):
        raise ConfigError(f"train.amp=bf16: this {kind} device has no bfloat16 support; "
                          "use train.amp=fp16 (with loss scaling) or train.amp=off")
    if amp == "fp16" and kind == "mps":
        raise ConfigError("train.amp=fp16 is not supported on MPS here; use train.amp=off")

    compile_ = train.compile
    if compile_ == "auto":
        if cuda:
            compile_on = True
        elif kind == "cpu":
            compile_on = steps_left is not None and steps_left >= CPU_COMPILE_MIN_STEPS
        else:
            compile_on = False
    else:
        compile_on = compile_ == "on"

    channels_last = train.channels_last == "on" or (train.channels_last == "auto" and kind in ("cuda", "cpu"))

    if train.cuda_graphs and not cuda:
        raise ConfigError(f"train.cuda_graphs=true needs a CUDA device (this run is on {kind}); "
                          "set train.cuda_graphs=false")
    if train.cuda_graphs and not compile_on:
        raise ConfigError("train.cuda_graphs=true works through torch.compile (mode reduce-overhead): "
                          "set train.compile=on or auto as well")
    if train.cuda_graphs and amp == "fp16":
        raise ConfigError("train.cuda_graphs=true with train.amp=fp16 is not supported (the GradScaler's "
                          "host-side checks break the graphs); use train.amp=bf16 or off")
    return SpeedSettings(device_type=kind, amp=amp, compile=compile_on, channels_last=channels_last,
                         cudnn_benchmark=cuda and not train.deterministic, cuda_graphs=train.cuda_graphs)


# --------------------------------------------------------------------------------------------------
# Pieces the training step calls
# --------------------------------------------------------------------------------------------------
def autocast_factory(settings: SpeedSettings) -> Callable[[], contextlib.AbstractContextManager]:
    """What ``GANStep.autocast`` calls around each forward pass."""
    dtype = settings.amp_dtype
    if dtype is None:
        return contextlib.nullcontext
    device_type = settings.device_type
    return lambda: torch.autocast(device_type, dtype=dtype)


class LossScaling:
    """How a network's loss becomes gradients and an optimiser step.  Plain by default; fp16 training
    overrides it with a GradScaler so that small gradients do not underflow."""

    def backward(self, loss: torch.Tensor, inputs: list[torch.Tensor] | None = None) -> None:
        loss.backward(inputs=inputs)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring the gradients to their true scale (before their norm is measured or clipped)."""

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class GradScaling(LossScaling):
    """fp16: scale the loss up before backward, unscale (and skip steps with inf/NaN) before the step."""

    def __init__(self, device_type: str):
        self.scaler = torch.amp.GradScaler(device_type)

    def backward(self, loss, inputs=None):
        self.scaler.scale(loss).backward(inputs=inputs)

    def unscale(self, optimizer):
        self.scaler.unscale_(optimizer)

    def step(self, optimizer):
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.scaler.load_state_dict(state)


def loss_scaling(settings: SpeedSettings) -> LossScaling:
    return GradScaling(settings.device_type) if settings.amp == "fp16" else LossScaling()


class CloneOutputs(nn.Module):
    """CUDA graphs replay into the same output memory each call; the step keeps D's logits and G's
    images across calls (D runs three times a step), so hand out copies.  Not yet run on a GPU."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return self.module(*args).clone()


class FrozenWeights(nn.Module):
    """D as the generator step needs it: a function of its input, D's weights taken as constants.

    Eager autograd skips D's weight gradients when the G step asks for G's only
    (``backward(inputs=...)``), but a compiled backward is one fused function that computes every
    gradient it was built for.  Detached weights make the compiled G-step graph compute the input
    gradient alone, without touching ``requires_grad`` on D.  Buffers (BatchNorm statistics,
    spectral-norm vectors) are D's own and update as usual.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        weights = {name: p.detach() for name, p in self.module.named_parameters()}
        return torch.func.functional_call(self.module, weights, args)


def compile_module(module: nn.Module, settings: SpeedSettings) -> nn.Module:
    """``torch.compile`` with fixed shapes (batches are always full, see the loader)."""
    mode = "reduce-overhead" if settings.cuda_graphs else None  # reduce-overhead = CUDA graphs
    compiled = torch.compile(module, dynamic=False, mode=mode)
    return CloneOutputs(compiled) if settings.cuda_graphs else compiled


def eager_module(module: nn.Module) -> nn.Module:
    """The plain module inside the wrappers the step may run (CUDA graphs' :class:`CloneOutputs`,
    torch.compile's ``OptimizedModule``, DistributedDataParallel), in any nesting.  Second derivatives
    (R1, R2, the gradient penalty) and FastGAN's decoders run on it: a compiled graph cannot be
    differentiated twice, and a CUDA graph's outputs are overwritten by its next replay."""
    from torch.nn.parallel import DistributedDataParallel
    while True:
        if isinstance(module, torch._dynamo.eval_frame.OptimizedModule):
            module = module._orig_mod
        elif isinstance(module, (CloneOutputs, DistributedDataParallel)):
            module = module.module
        else:
            return module


def set_backend_flags(settings: SpeedSettings) -> None:
    if settings.device_type == "cuda":
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark
        # TF32 for the fp32 parts (optimiser maths aside, matmuls and convolutions): free on Ampere+.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def accelerate(trainer, steps_left: int) -> SpeedSettings:
    """Apply the run's speed switches (and, under torchrun, DistributedDataParallel) to the trainer's
    step.  Call once, after any checkpoint is loaded and before the first step."""
    from ganforge.training import distributed

    settings = resolve(trainer.cfg.train, trainer.device, steps_left)
    set_backend_flags(settings)
    step = trainer.step_fn
    if settings.channels_last:
        trainer.G.to(memory_format=torch.channels_last)
        trainer.D.to(memory_format=torch.channels_last)
    if getattr(trainer, "loader", None) is not None:  # the reals in the networks' layout
        trainer.loader.memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    G_step, D_step, D_for_g = trainer.G, trainer.D, trainer.D
    if trainer.world_size > 1:
        G_step, D_step, D_for_g = distributed.wrap_networks(trainer)
        settings = dataclasses.replace(settings, scale=distributed.describe(trainer.world_size, trainer.cfg))
    if settings.compile:
        G_step, D_step = compile_module(G_step, settings), compile_module(D_step, settings)
        D_for_g = compile_module(FrozenWeights(D_for_g), settings)
    step.G, step.D, step.D_for_g = G_step, D_step, D_for_g
    step.autocast = autocast_factory(settings)
    step.scaling_d, step.scaling_g = loss_scaling(settings), loss_scaling(settings)
    saved = getattr(trainer, "loss_scaling_state", None) or {}  # a resumed fp16 run keeps its scales
    step.scaling_d.load_state_dict(saved.get("d", {}))
    step.scaling_g.load_state_dict(saved.get("g", {}))
    trainer.summary_extra = {**getattr(trainer, "summary_extra", {}), "speed": settings.to_dict()}
    return settings

