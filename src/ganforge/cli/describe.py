"""ganforge describe: a preset's layers, parameter counts, and the FLOPs of one forward pass of G and D."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("describe", help="print a preset's layer listing, parameter counts and forward-pass FLOPs")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--preset", default="quickstart")
    p.add_argument("--config")
    p.add_argument("--list", action="store_true", help="list the presets")
    return p


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(module, *inputs) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2), in eval mode, no grad."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return counter.get_total_flops()


def format_flops(flops: int) -> str:
    for unit, scale in (("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if flops >= scale:
            return f"{flops / scale:,.2f} {unit}"
    return f"{flops} FLOPs"


def run(args) -> int:
    import torch

    from ganforge import config as C
    from ganforge import nets

    if args.list:
        for name in C.preset_names():
            print(name)
        return 0
    cfg = C.load(preset=args.preset, file=args.config, overrides=args.overrides)
    G, D = nets.build(cfg)
    z = torch.zeros(1, cfg.model.nz)
    y = torch.zeros(1, dtype=torch.long) if cfg.model.num_classes else None
    image = torch.zeros(1, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    print(f"preset {cfg.preset}: model {cfg.model.name}, {cfg.data.image_size}x{cfg.data.image_size}, "
          f"{cfg.data.channels} channel(s), nz={cfg.model.nz}")
    print("\nGenerator:")
    print(G)
    print(f"Generator parameters: {count_parameters(G):,}")
    print(f"Generator forward pass, one image: {format_flops(forward_flops(G, z, y))}")
    print("\nDiscriminator:")
    print(D)
    print(f"Discriminator parameters: {count_parameters(D):,}")
    print(f"Discriminator forward pass, one image: {format_flops(forward_flops(D, image, y))}")
    return 0
