"""Flags that several subcommands share, defined once: the run, the device, the truncation tricks."""
from __future__ import annotations

import argparse

RUN_HELP = "a run directory, a run's name under --runs-dir (its folder name or its --name), or 'latest'"
SOURCE_HELP = RUN_HELP + "; or a checkpoint/generator file, or an export folder"


def add_runs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default="runs", help="where run names and 'latest' are looked for (default: ./runs)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (the default: a CUDA GPU, else Apple's MPS, else the CPU), cpu, cuda, cuda:N or mps")


def pick_device(name: str):
    """The torch device ``--device`` names; an error that says what to give when it cannot be used."""
    import torch

    from ganforge.config import ConfigError
    from ganforge.devices import pick_device as _pick

    try:
        device = _pick(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r} is not a device: give auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA GPU is visible to PyTorch here; use --device auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA GPU(s) (cuda:0 ...)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {name}: MPS is not available here; use --device auto or cpu")
    return device


def add_truncation(p: argparse.ArgumentParser) -> None:
    """The truncation tricks and the BatchNorm statistics to sample with (which truncation changes)."""
    p.add_argument("--truncation", "--truncation-scale", dest="truncation", type=float, default=1.0, metavar="PSI",
                   help="truncation by scaling (StyleGAN's psi): latents pulled towards the average by PSI in (0, 1]; "
                        "lower gives more typical, less varied images (default 1: off)")
    p.add_argument("--bn", choices=["batch", "running", "standing"], default=None,
                   help="BatchNorm statistics: 'batch' (as the training grids; the default), 'running' (eval mode) or "
                        "'standing' (averaged over batches of untruncated latents, as BigGAN; the default when "
                        "truncating, since batch statistics would undo it)")
    p.add_argument("--truncation-resample", type=float, default=None, metavar="T",
                   help="BigGAN's truncation trick: every latent entry whose magnitude exceeds T is drawn again, "
                        "so latents follow a normal truncated to [-T, T] (BigGAN uses 0.04 to 2; default: off). "
                        "With --truncation too, the resampled latents are then scaled")


def sampling_bn_mode(args) -> str:
    """The BatchNorm mode for ``sample`` and ``interpolate``: ``--bn``, standing when either truncation is on."""
    from ganforge.sampling import bn_mode_for

    return bn_mode_for(args.bn, args.truncation != 1.0 or args.truncation_resample is not None)


def load_sampling_generator(args):
    """For ``sample`` and ``interpolate``: check the truncation values before loading anything, then load
    the generator of ``args.source`` on ``args.device`` and turn ``args.class_index`` (a class folder's name
    or an index) into an index.  Returns (G, its config, the device)."""
    import torch

    from ganforge.classes import resolve_class
    from ganforge.runfiles import resolve_source
    from ganforge.sampling import load_generator, truncate, truncate_resample

    truncate(torch.zeros(1), args.truncation)
    if args.truncation_resample is not None:
        truncate_resample(torch.zeros(1), args.truncation_resample, torch.Generator())
    device = pick_device(args.device)
    G, cfg, facts = load_generator(resolve_source(args.source, args.runs_dir), device=device)
    args.class_index = resolve_class(args.class_index, cfg, facts.class_names)
    return G, cfg, device
