"""ganforge describe: a preset's layers, parameter counts, FLOPs and activation memory per image of G and D.

The figures are measured on the ``meta`` device (:mod:`ganforge.nets.measure` says how), so describing
a 1024 px model takes a second and no memory.
"""
from __future__ import annotations

import argparse

# Measured below the CLI (the recipe and --dry-run use them too); imported here by name for callers.
from ganforge.nets.measure import (BYTES_PER_PARAMETER_TRAINING, activation_bytes_per_image,  # noqa: F401
                                   count_parameters, format_bytes, forward_flops, measure,
                                   saved_activation_bytes, training_memory)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("describe", help="print a preset's layers, parameter counts, FLOPs and activation memory per image")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--preset", default="quickstart")
    p.add_argument("--config")
    p.add_argument("--list", action="store_true", help="list the presets")
    return p


def format_flops(flops: int) -> str:
    for unit, scale in (("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if flops >= scale:
            return f"{flops / scale:,.2f} {unit}"
    return f"{flops} FLOPs"


def run(args) -> int:
    from ganforge import config as C

    if args.list:
        for name in C.preset_names():
            print(name)
        return 0
    cfg = C.load(preset=args.preset, file=args.config, overrides=args.overrides)
    m = measure(cfg)
    print(f"preset {cfg.preset}: model {cfg.model.name}, {cfg.data.image_size}x{cfg.data.image_size}, "
          f"{cfg.data.channels} channel(s), nz={cfg.model.nz}")
    print("\nGenerator:")
    print(m["G"])
    print(f"Generator parameters: {m['g_params']:,}")
    print(f"Generator forward pass, one image: {format_flops(m['g_flops'])}")
    print(f"Generator activation memory, one image (training forward): {format_bytes(m['g_act'])}")
    print("\nDiscriminator:")
    print(m["D"])
    frozen = m["d_params"] - m["d_trained"]  # a projected D's ImageNet network and random projections
    print(f"Discriminator parameters: {m['d_params']:,}" +
          (f" ({m['d_trained']:,} trained, {frozen:,} frozen)" if frozen else ""))
    print(f"Discriminator forward pass, one image: {format_flops(m['d_flops'])}")
    print(f"Discriminator activation memory, one image (training forward): {format_bytes(m['d_act'])}")
    memory = training_memory(cfg, m)
    batch = cfg.data.batch_size
    print(f"\nTraining memory, about: {format_bytes(memory.fixed)} for weights, gradients and Adam's moments"
          f"{' and the EMA copy' if cfg.ema.enabled else ''}, plus {format_bytes(memory.per_image)} per image of "
          f"the batch at the peak ({memory.parts}; data.batch_size={batch}: "
          f"{format_bytes(memory.per_step(batch))} at float32, {format_bytes(memory.per_step(batch, 'bf16'))} "
          "with mixed precision)")
    return 0
