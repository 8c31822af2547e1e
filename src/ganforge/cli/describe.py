"""ganforge describe: a preset's layers and parameter counts."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("describe", help="print a preset's layer listing and parameter counts")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--preset", default="quickstart")
    p.add_argument("--config")
    p.add_argument("--list", action="store_true", help="list the presets")
    return p


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(args) -> int:
    from ganforge import config as C
    from ganforge import nets

    if args.list:
        for name in C.preset_names():
            print(name)
        return 0
    cfg = C.load(preset=args.preset, file=args.config, overrides=args.overrides)
    G, D = nets.build(cfg)
    print(f"preset {cfg.preset}: model {cfg.model.name}, {cfg.data.image_size}x{cfg.data.image_size}, "
          f"{cfg.data.channels} channel(s), nz={cfg.model.nz}")
    print("\nGenerator:")
    print(G)
    print(f"Generator parameters: {count_parameters(G):,}")
    print("\nDiscriminator:")
    print(D)
    print(f"Discriminator parameters: {count_parameters(D):,}")
    return 0
