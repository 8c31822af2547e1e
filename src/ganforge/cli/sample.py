"""ganforge sample: images from a trained generator, as one grid or as separate PNG files.

``--n N --seed S`` draws N latents from one seed (the same S gives the same N images).  ``--seeds
0-35,100`` draws each image's latent from its own seed alone, as stylegan2-ada's generate.py does: seed 7
gives the same image whichever other seeds are asked for, on every call, and on the CPU or a GPU (the
latent is drawn on the CPU, then moved; the network's arithmetic differs by float rounding only).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ganforge.cli.common import (SOURCE_HELP, add_device, add_runs_dir, add_truncation, load_sampling_generator,
                                 sampling_bn_mode)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="write samples from a run, a checkpoint or an exported generator",
                       description="Write images from a generator: a grid (--out FILE.png) or one PNG per image "
                                   "(--out DIR/). --seeds draws each image from its own seed.")
    p.add_argument("source", metavar="RUN", help=SOURCE_HELP)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--n", type=int, default=None, help="number of images, latents drawn from --seed (default 64)")
    which.add_argument("--seeds", metavar="LIST",
                       help="one image per seed, each from that seed alone: numbers and ranges, e.g. 0-35,100; "
                            "with --out DIR/ the files are seed0000.png, ...")
    p.add_argument("--out", default="samples.png", help="a .png file for a grid, or a folder (ending in /) for separate PNGs")
    p.add_argument("--seed", type=int, default=0, help="with --n: the latent seed, the same seed gives the same images")
    p.add_argument("--class", dest="class_index", default=None, metavar="NAME|INDEX",
                   help="class for conditional models: its folder name or its index (default: a random class per image)")
    add_device(p)
    add_truncation(p)
    add_runs_dir(p)
    return p


def class_labels(class_index: int | None, num_classes: int, n: int, drawn):
    """Labels for ``n`` images: ``class_index`` for all, else ``drawn`` (a tensor, or a callable giving one);
    None for an unconditional model."""
    import torch

    from ganforge.config import ConfigError

    if not num_classes:
        if class_index is not None:
            raise ConfigError(f"--class {class_index}: this generator is not conditional (it has no classes)")
        return None
    if class_index is not None:
        if not 0 <= class_index < num_classes:
            raise ConfigError(f"--class {class_index} is out of range: the model has {num_classes} classes "
                              f"(0 to {num_classes - 1})")
        return torch.full((n,), class_index, dtype=torch.long)
    return drawn() if callable(drawn) else drawn


def run(args) -> int:
    import torch

    from ganforge.config import ConfigError
    from ganforge.sampling import (MAX_SEEDS, generate, generate_each, parse_seeds, save_each, save_grid,
                                   seed_latents, truncate_resample)

    if args.n is not None and not 0 < args.n <= MAX_SEEDS:
        raise ConfigError(f"--n must be a positive number of images up to {MAX_SEEDS:,}, got {args.n}")
    if args.seed < 0 or args.seed >= 2**63:
        raise ConfigError(f"--seed must be from 0 to 2**63 - 1, got {args.seed}")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    G, cfg, device = load_sampling_generator(args)  # truncation checked before anything is loaded
    num_classes = cfg.model.num_classes
    bn_mode = sampling_bn_mode(args)
    if seeds is not None:
        z, drawn = seed_latents(seeds, cfg.model.nz, num_classes, resample=args.truncation_resample)
        labels = class_labels(args.class_index, num_classes, len(seeds), drawn)
        images = generate_each(G, z.to(device), None if labels is None else labels.to(device), bn_mode=bn_mode,
                               psi=args.truncation)
        names = [f"seed{s:04d}.png" for s in seeds]
    else:
        n = args.n or 64
        g = torch.Generator().manual_seed(args.seed)
        z = torch.randn(n, cfg.model.nz, generator=g)
        if args.truncation_resample is not None:
            z = truncate_resample(z, args.truncation_resample, g)
        labels = class_labels(args.class_index, num_classes, n,
                              lambda: torch.randint(0, num_classes, (n,), generator=g))
        images = generate(G, z.to(device), None if labels is None else labels.to(device), bn_mode=bn_mode,
                          psi=args.truncation)
        names = None
    out = Path(args.out)
    if args.out.endswith(("/", "\\")) or out.is_dir() or not out.suffix:
        paths = save_each(images, out, names)
        print(f"wrote {len(paths)} images to {out}/" + (f" ({paths[0].name} ... {paths[-1].name})" if names else ""))
    else:
        save_grid(images, out)
        print(f"wrote a grid of {images.shape[0]} images to {out}")
    return 0
