"""ganforge sample: images from a trained generator, as one grid or as separate PNG files."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="write samples from a run, a checkpoint or an exported generator")
    p.add_argument("source", help="run directory, checkpoint/generator file, or export folder")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", default="samples.png", help="a .png file for a grid, or a folder (ending in /) for separate PNGs")
    p.add_argument("--seed", type=int, default=0, help="latent seed: the same seed gives the same images")
    p.add_argument("--class", dest="class_index", type=int, default=None, help="class index for conditional models")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bn", choices=["batch", "running"], default="batch",
                   help="BatchNorm statistics: 'batch' (as the training grids) or 'running' (eval mode)")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                   help="truncation trick: scale latents by PSI in (0, 1]; lower gives cleaner, less varied images (default 1: off)")
    return p


def run(args) -> int:
    import torch

    from ganforge.config import ConfigError
    from ganforge.sampling import generate, load_generator, save_each, save_grid, truncate

    if args.n <= 0:
        raise ConfigError(f"--n must be a positive number of images, got {args.n}")
    G, cfg = load_generator(args.source, device=args.device)
    g = torch.Generator().manual_seed(args.seed)
    z = truncate(torch.randn(args.n, cfg.model.nz, generator=g), args.truncation).to(args.device)
    labels = None
    if cfg.model.num_classes:
        if args.class_index is not None and not 0 <= args.class_index < cfg.model.num_classes:
            raise ConfigError(f"--class {args.class_index} is out of range: the model has {cfg.model.num_classes} classes")
        labels = (torch.full((args.n,), args.class_index) if args.class_index is not None
                  else torch.randint(0, cfg.model.num_classes, (args.n,), generator=g)).to(args.device)
    images = generate(G, z, labels, bn_mode=args.bn)
    out = Path(args.out)
    if args.out.endswith(("/", "\\")) or out.is_dir() or not out.suffix:
        paths = save_each(images, out)
        print(f"wrote {len(paths)} images to {out}/")
    else:
        save_grid(images, out)
        print(f"wrote a grid of {args.n} images to {out}")
    return 0
