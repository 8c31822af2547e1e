"""ganforge prepare: decode and resize a dataset once into one raw uint8 array file."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "prepare", help="decode and resize a dataset once, for training at memory speed",
        description="Decode every image of SRC (a folder, a zip, zip:inner/dir, or a named dataset), convert it to "
                    "--channels, resize its shorter side to --size and centre-crop it, and store the result in the "
                    "new folder OUT as one raw uint8 array file plus manifest.json. Train on it with "
                    "--data OUT data.image_size=SIZE data.channels=CHANNELS. Broken files are skipped and listed "
                    "in the manifest.")
    p.add_argument("src", metavar="SRC", help="images to prepare: folder, zip (zip:inner/dir) or named dataset")
    p.add_argument("out", metavar="OUT", help="new folder for the prepared dataset (must not exist or be empty)")
    p.add_argument("--size", type=int, default=64, help="image size in pixels (default: 64)")
    p.add_argument("--channels", type=int, choices=(1, 3, 4), default=3, help="1 (grayscale), 3 (RGB) or 4 (RGBA, transparency kept); default 3")
    p.add_argument("--labels", action="store_true", help="record class labels from the first folder level")
    p.add_argument("--background", default="255,255,255", metavar="R,G,B",
                   help="colour transparent images are composited on (default: 255,255,255, white)")
    p.add_argument("--limit", type=int, default=0, help="prepare only the first N images (0: all)")
    p.add_argument("--workers", type=int, default=-1, help="decoding processes (default: the cores available)")
    p.add_argument("--max-bad-fraction", type=float, default=0.05,
                   help="stop before preparing if more of a sample of files than this are broken (default 0.05)")
    p.add_argument("--data-root", default=None, help="where named datasets are looked for (data.root)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from pathlib import Path

    from ganforge.config import Config, ConfigError, DataConfig
    from ganforge.data.prepared import prepare

    if not 8 <= args.size <= 4096:
        raise ConfigError(f"--size must be from 8 to 4096 pixels, got {args.size}")
    if args.limit < 0:
        raise ConfigError(f"--limit must be 0 (all images) or a positive number of images, got {args.limit}")
    if not -1 <= args.workers <= 1024:
        raise ConfigError(f"--workers must be -1 (one per core), 0 (none) or a number of processes up to 1024, "
                          f"got {args.workers}")
    try:
        background = [int(c) for c in args.background.split(",")]
    except ValueError:
        background = []
    if len(background) != 3 or not all(0 <= c <= 255 for c in background):
        raise ConfigError(f"--background {args.background!r}: give three integers 0..255, as R,G,B")
    if not 0.0 <= args.max_bad_fraction <= 1.0:
        raise ConfigError(f"--max-bad-fraction must be between 0 and 1, got {args.max_bad_fraction}")
    data = DataConfig(source=args.src, image_size=args.size, channels=args.channels, labels=args.labels,
                      background=background, limit=args.limit, crop="center",
                      max_bad_fraction=args.max_bad_fraction)
    if args.data_root:
        data.root = args.data_root
    manifest = prepare(Config(data=data), Path(args.out), workers=args.workers, progress=not args.quiet)
    skipped = manifest["skipped"]
    print(f"ganforge prepare: {manifest['count']} images at {args.size}x{args.size}x{args.channels} in {args.out} "
          f"({manifest['seconds']} s); {len(skipped)} broken file(s) skipped"
          + (f", listed in {Path(args.out) / 'manifest.json'}" if skipped else ""))
    for name, reason in skipped[:5]:
        print(f"  skipped {json.dumps(name)}: {reason}")
    print(f"Train on it with: ganforge train --data {args.out} data.image_size={args.size} "
          f"data.channels={args.channels}" + (" data.labels=true" if args.labels else ""))
    return 0
