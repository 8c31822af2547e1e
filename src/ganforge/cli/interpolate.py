"""ganforge interpolate: walks through latent space, as a grid (PNG) and as an animation (GIF).

Each of ``--rows`` walks goes through ``--points`` random latents along great circles (spherical
interpolation), ``--steps`` images per leg.  With ``--seeds 3,17,42`` there is one walk, through the
latents of those seeds in that order (each drawn from its seed alone, as ``ganforge sample --seeds``
draws them, so the walk starts and ends at the images sample shows for those seeds).  The grid has one
walk per row, left to right; the GIF plays all walks at once, forth and back, so it loops without a jump.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ganforge.cli.common import (SOURCE_HELP, add_device, add_runs_dir, add_truncation, load_sampling_generator,
                                 sampling_bn_mode)


#: The most --steps, --points or --rows, and the most images in all (every frame is generated and kept).
MAX_WALK, MAX_FRAMES = 10_000, 20_000


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("interpolate", help="spherical interpolation between latent points, as a grid and a GIF")
    p.add_argument("source", metavar="RUN", help=SOURCE_HELP)
    p.add_argument("--steps", type=int, default=16, help="images from one latent point to the next, ends included (default 16)")
    p.add_argument("--seeds", metavar="LIST",
                   help="walk through the latents of these seeds, in order (e.g. 3,17,42 or 0-4): one walk; "
                        "instead of --points and --rows")
    p.add_argument("--points", type=int, default=None, help="random latent points each walk passes through (default 2)")
    p.add_argument("--rows", type=int, default=None, help="random walks side by side (default 8)")
    p.add_argument("--out", default="walk.gif", help="the GIF; the grid is written next to it as .png (default walk.gif)")
    p.add_argument("--seed", type=int, default=0, help="latent seed of the random walks: the same seed gives the same walks")
    add_truncation(p)
    p.add_argument("--class", dest="class_index", default=None, metavar="NAME|INDEX",
                   help="class for conditional models: its folder name or its index (default: one random class per walk)")
    p.add_argument("--fps", type=float, default=10.0, help="GIF frames per second (default 10)")
    add_device(p)
    add_runs_dir(p)
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

    from ganforge.cli.sample import class_labels
    from ganforge.config import ConfigError
    from ganforge.reporting.timeline import write_gif
    from ganforge.sampling import (generate, generate_each, grid_tensor, parse_seeds, save_grid,
                                   seed_latents, truncate_resample)

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if seeds is not None:
        given = [flag for flag, value in (("--points", args.points), ("--rows", args.rows)) if value is not None]
        if given:
            raise ConfigError(f"--seeds chooses the points of one walk; leave out {' and '.join(given)}")
        if len(seeds) < 2:
            raise ConfigError(f"--seeds {args.seeds}: a walk needs at least 2 seeds, e.g. --seeds 3,17,42")
    points = args.points if args.points is not None else 2
    rows = args.rows if args.rows is not None else 8
    for flag, value, least in (("--steps", args.steps, 2), ("--points", points, 2), ("--rows", rows, 1)):
        if value < least:
            raise ConfigError(f"{flag} must be at least {least}, got {value}")
        if value > MAX_WALK:  # each walk's frames are generated and held in memory
            raise ConfigError(f"{flag} must be at most {MAX_WALK}, got {value}")
    if rows * ((points - 1) * (args.steps - 1) + 1) > MAX_FRAMES:
        raise ConfigError(f"--rows {rows} x --points {points} x --steps {args.steps} make more than {MAX_FRAMES:,} "
                          "images; ask for fewer")
    if not 0 <= args.seed < 2**63:
        raise ConfigError(f"--seed must be from 0 to 2**63 - 1, got {args.seed}")
    if not 0 < args.fps <= 1000:
        raise ConfigError(f"--fps must be above 0 and at most 1000, got {args.fps}")
    out = Path(args.out)
    if out.suffix.lower() != ".gif":
        raise ConfigError(f"--out {args.out}: give a .gif file (the grid is written next to it as .png)")
    G, cfg, device = load_sampling_generator(args)  # truncation checked before anything is loaded
    num_classes = cfg.model.num_classes
    if seeds is not None:
        keyframes, drawn = seed_latents(seeds, cfg.model.nz, num_classes, resample=args.truncation_resample)
        keyframes = keyframes[None]  # one walk through every seed
        per_row = class_labels(args.class_index, num_classes, 1, None if drawn is None else drawn[:1])
    else:
        g = torch.Generator().manual_seed(args.seed)
        keyframes = torch.randn(rows, points, cfg.model.nz, generator=g)
        if args.truncation_resample is not None:
            keyframes = truncate_resample(keyframes, args.truncation_resample, g)
        per_row = class_labels(args.class_index, num_classes, rows,
                               lambda: torch.randint(0, num_classes, (rows,), generator=g))
    z = latent_path(keyframes, args.steps)  # (rows, frames, nz)
    rows, frames = z.shape[:2]
    labels = None if per_row is None else per_row.repeat_interleave(frames).to(device)
    # Chosen seeds: each frame from its own latent alone, so the walk's ends are `sample --seeds`'s images.
    draw = generate_each if seeds is not None else generate
    bn_mode = sampling_bn_mode(args)
    images = draw(G, z.reshape(rows * frames, -1).to(device), labels, bn_mode=bn_mode, psi=args.truncation).cpu()
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
