"""Training on several devices and machines with ``torchrun`` and DistributedDataParallel.

``torchrun --nproc_per_node=N -m ganforge train ...`` starts N processes; torchrun sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` (and, across machines, the rendezvous), which
:func:`launch_environment` reads.  Then:

- every process joins one process group: NCCL on CUDA, gloo on CPU and where processes share a GPU
  (:func:`setup`, :func:`cuda_placement`);
- each process trains on its own share of every epoch (``data.loader.EpochSampler`` splits by rank)
  with ``data.batch_size`` images per step, so the *effective* batch is ``data.batch_size x N``;
  the process count and the effective batch are the run's facts (``world_size``, ``effective_batch_size``
  in its run.json);
- ``train.lr_scaling`` (none / linear / sqrt) multiplies the learning rates by N or sqrt(N) when the
  run starts; the config saved in the run holds the rates actually used, and a note says how they
  were derived.  GANs are sensitive to the learning rate: ``none`` is the default;
- latents differ per process (the trainer seeds ``train.seed + rank``), weights start equal (DDP
  copies rank 0's) and stay equal (gradients are averaged);
- rank 0 alone writes the run directory, samples, metrics and checkpoints; every rank's random
  state is gathered into each checkpoint, so a resume under the same N continues exactly, with
  every rank loading the same checkpoint file that rank 0 chose;
- every decision that changes what the ranks do next is taken together: the divergence guard's verdict
  (the worst failure any rank saw), a stop signal received by any rank, ``train.max_minutes`` and
  ``train.midsave_minutes`` (clocks differ), and whether in-training evaluation found a new best
  (rank 0 scores and broadcasts its verdict); otherwise a rank would wait forever in a collective
  the others never join;
- ``train.sync_bn`` computes BatchNorm statistics over the effective batch (CUDA only: torch's
  SyncBatchNorm has no CPU kernel).  Only the training step's view of the networks synchronises;
  sampling on rank 0 alone keeps plain BatchNorm and so cannot wait for the other ranks.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from ganforge.config import Config, ConfigError
from ganforge.devices import rng_state, set_rng_state
from ganforge.runfiles import RunFacts


@dataclass(frozen=True)
class LaunchEnvironment:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1


def launch_environment(environ: dict | None = None) -> LaunchEnvironment:
    """Rank and world size as torchrun (or any launcher setting the same variables) gives them."""
    env = os.environ if environ is None else environ
    try:
        world_size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK / LOCAL_RANK / WORLD_SIZE in the environment are not integers; "
                          "launch with torchrun, or unset them") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"RANK={rank} with WORLD_SIZE={world_size} is not a valid launch; use torchrun")
    return LaunchEnvironment(rank=rank, local_rank=local_rank, world_size=world_size)


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# --------------------------------------------------------------------------------------------------
# Joining the process group, and what the run's config records about it
# --------------------------------------------------------------------------------------------------
def _device_type(cfg: Config) -> str:
    name = cfg.train.device
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name).type


def setup(cfg: Config, rank: int, world_size: int, local_rank: int | None = None) -> None:
    """Join the process group of a ``world_size``-process launch (no-op for one process)."""
    if world_size <= 1 or is_active():
        return
    kind = _device_type(cfg)
    if kind == "cuda":
        if ":" in cfg.train.device:
            raise ConfigError(f"train.device={cfg.train.device} pins every process to one GPU; under torchrun "
                              "leave train.device=auto (or cuda): process k uses GPU LOCAL_RANK")
        index, backend = cuda_placement(launch_environment().local_rank if local_rank is None else local_rank,
                                        _local_world_size(), torch.cuda.device_count())
        if backend == "gloo" and cfg.train.sync_bn:
            raise ConfigError("train.sync_bn=true needs one GPU per process (NCCL), but this machine runs more "
                              "processes than it has GPUs: set train.sync_bn=false, or start one process per GPU")
        torch.cuda.set_device(index)
    elif kind == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"train.device={cfg.train.device}: multi-process training runs on CUDA (nccl) or "
                          "CPU (gloo) only")
    if cfg.train.sync_bn and kind != "cuda":
        raise ConfigError("train.sync_bn=true needs CUDA devices (torch's SyncBatchNorm has no CPU kernel); "
                          "set train.sync_bn=false")
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; train with one process")
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)


def _local_world_size() -> int | None:
    try:
        return int(os.environ["LOCAL_WORLD_SIZE"])  # torchrun: processes on this machine
    except (KeyError, ValueError):
        return None


def cuda_placement(local_rank: int, local_world_size: int | None, device_count: int) -> tuple[int, str]:
    """The GPU a process uses and the process group's backend: NCCL with one GPU per process; gloo when
    this machine runs more processes than it has GPUs (they share them, ``local_rank % device_count``),
    since NCCL refuses two ranks on one GPU ("Duplicate GPU detected").  ``local_world_size`` None:
    unknown (not torchrun), and then only a process without a GPU of its own shares."""
    if device_count < 1:
        raise ConfigError("train.device=cuda under torchrun, but no CUDA GPU is visible to PyTorch: "
                          "set train.device=cpu (gloo), or check CUDA_VISIBLE_DEVICES")
    shared = (local_world_size if local_world_size is not None else local_rank + 1) > device_count
    return local_rank % device_count, "gloo" if shared else "nccl"


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


LR_FACTORS = {"none": lambda n: 1.0, "linear": lambda n: float(n), "sqrt": lambda n: math.sqrt(n)}


def record_scale(cfg: Config, world_size: int) -> tuple[Config, RunFacts]:
    """A copy of ``cfg`` with the learning rates after ``train.lr_scaling`` (what config.yaml of a new run
    holds), and the run's facts saying how many processes train it and the effective batch (run.json)."""
    cfg = copy.deepcopy(cfg)
    facts = RunFacts().at_scale(world_size, cfg.data.batch_size)
    factor = LR_FACTORS[cfg.train.lr_scaling](world_size)
    if factor != 1.0:
        base_g, base_d = cfg.optim.g.lr, cfg.optim.d.lr
        cfg.optim.g.lr, cfg.optim.d.lr = base_g * factor, base_d * factor
        cfg.notes = list(cfg.notes) + [
            f"train.lr_scaling={cfg.train.lr_scaling}: {world_size} processes x data.batch_size "
            f"{cfg.data.batch_size} = effective batch {facts.effective_batch_size}; learning rates "
            f"x{factor:g}: optim.g.lr {base_g:g} -> {cfg.optim.g.lr:g}, optim.d.lr {base_d:g} -> {cfg.optim.d.lr:g}"]
    return cfg, facts


def check_resume_scale(saved: Config, facts: RunFacts, world_size: int, force: bool) -> None:
    """A run continues with the number of processes it was trained with (its facts say), unless forced."""
    if facts.world_size != world_size and not force:
        raise ConfigError(
            f"this run was trained by {facts.world_size} process(es) (effective batch "
            f"{facts.effective_batch_size or saved.data.batch_size * facts.world_size}); resuming with "
            f"{world_size} would change the effective batch and the data order.  Launch with "
            f"torchrun --nproc_per_node={facts.world_size} (or without torchrun for 1), or pass --force")


# --------------------------------------------------------------------------------------------------
# Collectives the run needs (each a no-op on one process)
# --------------------------------------------------------------------------------------------------
def broadcast_object(obj, src: int = 0):
    """``obj`` from rank ``src`` on every rank (run directory names, checkpoint choices)."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_to_main(obj) -> list | None:
    """Every rank's ``obj``, as a list on rank 0 (None elsewhere, and on one process)."""
    if not is_active():
        return None
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier() -> None:
    if is_active():
        dist.barrier()


def max_over_ranks(value: int) -> int:
    """The largest ``value`` any rank passes, on every rank (one small all-reduce; no-op on one process)."""
    if not is_active():
        return value
    t = torch.tensor([value], dtype=torch.long, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when any rank says so: decisions that depend on a clock or a signal."""
    return bool(max_over_ranks(1 if flag else 0))


# --------------------------------------------------------------------------------------------------
# Per-rank state in checkpoints
# --------------------------------------------------------------------------------------------------
def rank_state(trainer) -> dict:
    """What differs between ranks and must survive a resume: random streams (latents, flips)."""
    return {"rng": rng_state(trainer.device),
            "loader": trainer.loader.state_dict() if trainer.loader is not None else None}


def gather_rank_states(trainer) -> list | None:
    """All ranks call this at the same checkpoint; rank 0 gets the list to store."""
    return gather_to_main(rank_state(trainer))


def restore_rank_state(trainer, state: dict) -> None:
    """After the trainer loaded rank 0's checkpoint, give this rank its own random streams back."""
    ranks = state.get("ranks")
    if trainer.world_size <= 1:
        return
    if ranks and len(ranks) == trainer.world_size:
        mine = ranks[trainer.rank]
        set_rng_state(mine["rng"], trainer.device)
        if mine.get("loader") is not None and trainer.loader is not None:
            trainer.loader.load_state_dict(mine["loader"])
        return
    # A different number of processes (--force): fresh, distinct streams per rank.
    torch.manual_seed(trainer.cfg.train.seed + 1_000_003 * (trainer.progress.step + 1) + trainer.rank)


# --------------------------------------------------------------------------------------------------
# The networks as the training step sees them
# --------------------------------------------------------------------------------------------------
def _sync_bn_view(module: nn.Module) -> nn.Module:
    """The same network with SyncBatchNorm in place of BatchNorm, sharing every parameter and buffer
    (so updates show in the original), while the original keeps plain BatchNorm for sampling."""
    if isinstance(module, _BatchNorm):
        sync = nn.SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        for name, p in module.named_parameters(recurse=False):
            setattr(sync, name, p)
        for name, b in module.named_buffers(recurse=False):
            sync.register_buffer(name, b)
        sync.train(module.training)
        return sync
    view = copy.copy(module)  # shares parameters and buffers; children replaced below
    view._modules = {name: (_sync_bn_view(child) if child is not None else None)
                     for name, child in module._modules.items()}
    return view


def wrap_networks(trainer) -> tuple[nn.Module, nn.Module, nn.Module]:
    """G and D for the step in DistributedDataParallel (with SyncBatchNorm when asked), and D as the
    generator step runs it: outside DDP (see ``GANStep.D_for_g``), with the same BatchNorm kind."""
    if not is_active():
        raise ConfigError(f"world_size={trainer.world_size} but no process group: launch with torchrun")
    G, D = trainer.G, trainer.D
    if trainer.cfg.train.sync_bn:
        G, D = _sync_bn_view(G), _sync_bn_view(D)
    device_ids = [trainer.device.index if trainer.device.index is not None else torch.cuda.current_device()] \
        if trainer.device.type == "cuda" else None
    # DDP's default buffer sync makes BatchNorm running statistics follow rank 0's at every forward;
    # gradient_as_bucket_view saves one copy of every gradient.
    wrap = lambda m: DistributedDataParallel(m, device_ids=device_ids, gradient_as_bucket_view=True)  # noqa: E731
    return wrap(G), wrap(D), D


def describe(world_size: int, cfg: Config) -> str:
    return (f"{world_size} processes ({dist.get_backend() if is_active() else 'no process group'}), "
            f"effective batch {cfg.data.batch_size} x {world_size} = {cfg.data.batch_size * world_size}, "
            f"lr scaling {cfg.train.lr_scaling}, sync_bn {'on' if cfg.train.sync_bn else 'off'}")

