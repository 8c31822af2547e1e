"""ganforge interpolate: walks through latent space, as a grid (PNG) and as an animation (GIF).

Each of ``--rows`` walks goes through ``--points`` random latents along great circles (spherical
interpolation), ``--steps`` images per leg.  The grid has one walk per row, left to right; the GIF
plays all walks at once, forth and back, so it loops without a jump.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("interpolate", help="spherical interpolation between latent points, as a grid and a GIF")
    p.add_argument("source", metavar="RUN", help="run directory, checkpoint/generator file, or export folder")
    p.add_argument("--steps", type=int, default=16, help="images from one latent point to the next, ends included (default 16)")
    p.add_argument("--points", type=int, default=2, help="latent points each walk passes through (default 2)")
    p.add_argument("--rows", type=int, default=8, help="walks side by side (default 8)")
    p.add_argument("--out", default="walk.gif", help="the GIF; the grid is written next to it as .png (default walk.gif)")
    p.add_argument("--seed", type=int, default=0, help="latent seed: the same seed gives the same walks")
    p.add_argument("--truncation", type=float, default=1.0, metavar="PSI",
                   help="truncation trick: scale latents by PSI in (0, 1] (default 1: off)")
    p.add_argument("--class", dest="class_index", type=int, default=None,
                   help="class index for conditional models (default: one random class per walk)")
    p.add_argument("--fps", type=float, default=10.0, help="GIF frames per second (default 10)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bn", choices=["batch", "running"], default="batch",
                   help="BatchNorm statistics: 'batch' (as the training grids) or 'running' (eval mode)")
    return p


def latent_path(z_points, steps: int):
    """(rows, points, nz) keyframes -> (rows, frames, nz) along great circles, junctions not repeated."""
    import torch

    from ganforge.sampling import slerp

    t = torch.linspace(0, 1, steps)
    legs = []
    for k in range(z_points.shape[1] - 1):
        leg = slerp(z_points[:, k], z_points[:, k + 1], t)
        legs.append(leg if k == 0 else leg[:, 1:])
    return torch.cat(legs, dim=1)


def run(args) -> int:
    import torch
    from PIL import Image

    from ganforge.config import ConfigError
    from ganforge.reporting.timeline import write_gif
    from ganforge.sampling import generate, grid_tensor, load_generator, save_grid, truncate

    for flag, value, least in (("--steps", args.steps, 2), ("--points", args.points, 2), ("--rows", args.rows, 1)):
        if value < least:
            raise ConfigError(f"{flag} must be at least {least}, got {value}")
    if args.fps <= 0:
        raise ConfigError(f"--fps must be positive, got {args.fps}")
    out = Path(args.out)
    if out.suffix.lower() != ".gif":
        raise ConfigError(f"--out {args.out}: give a .gif file (the grid is written next to it as .png)")
    G, cfg = load_generator(args.source, device=args.device)
    g = torch.Generator().manual_seed(args.seed)
    keyframes = truncate(torch.randn(args.rows, args.points, cfg.model.nz, generator=g), args.truncation)
    z = latent_path(keyframes, args.steps)  # (rows, frames, nz)
    rows, frames = z.shape[:2]
    labels = None
    if cfg.model.num_classes:
        if args.class_index is not None and not 0 <= args.class_index < cfg.model.num_classes:
            raise ConfigError(f"--class {args.class_index} is out of range: the model has {cfg.model.num_classes} classes")
        per_row = (torch.full((rows,), args.class_index) if args.class_index is not None
                   else torch.randint(0, cfg.model.num_classes, (rows,), generator=g))
        labels = per_row.repeat_interleave(frames).to(args.device)
    images = generate(G, z.reshape(rows * frames, -1).to(args.device), labels, bn_mode=args.bn).cpu()
    images = images.reshape(rows, frames, *images.shape[1:])

    grid_path = save_grid(images.reshape(rows * frames, *images.shape[2:]), out.with_suffix(".png"), nrow=frames)
    # One GIF frame per position along the walks: that image of every walk, as a square-ish grid.
    nrow = math.ceil(math.sqrt(rows))
    pictures = []
    for f in range(frames):
        grid = grid_tensor(images[:, f], nrow=nrow).mul(255).round().byte().permute(1, 2, 0).numpy()
        pictures.append(Image.fromarray(grid))
    pictures += pictures[-2:0:-1]  # and back again, so the loop is seamless
    frame_ms = round(1000 / args.fps)
    write_gif(pictures, out, frame_ms=frame_ms, hold_last_ms=frame_ms)
    print(f"wrote {out} ({len(pictures)} frames) and {grid_path} ({rows} walks x {frames} images)")
    return 0
