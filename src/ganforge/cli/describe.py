"""ganforge describe: a preset's layers, parameter counts, FLOPs and activation memory per image of G and D.

Everything is measured on the ``meta`` device (tensors with shapes and no data), so describing a
1024 px model takes a second and no memory:

- FLOPs: one forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add
  counts 2; convolutions, matrix multiplies and attention; element-wise operations are not counted);
- activation memory: the tensors autograd keeps for the backward pass of a *training* forward (train
  mode, gradients on), counted through ``torch.autograd.graph.saved_tensors_hooks``, each storage once
  and parameters left out.  It is measured at batch 2 and 3 and the difference taken, so what does not
  grow with the batch (spectral norm's normalised weights) is not charged to each image.
"""
from __future__ import annotations

import argparse

#: Adam keeps two moments per parameter, training one gradient: 4 float32 copies of the weights.
BYTES_PER_PARAMETER_TRAINING = 4 * 4


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("describe", help="print a preset's layers, parameter counts, FLOPs and activation memory per image")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--preset", default="quickstart")
    p.add_argument("--config")
    p.add_argument("--list", action="store_true", help="list the presets")
    return p


def count_parameters(module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


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


def saved_activation_bytes(module, *inputs) -> int:
    """Bytes of the tensors autograd saves for backward in one training-mode forward of ``module``.

    Each storage counts once (a tensor saved by two operations, or views of one tensor, are one
    allocation); the module's own parameters are not activations and are left out.
    """
    import torch

    params = {p.untyped_storage()._cdata for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in params:
            seen[storage._cdata] = storage.nbytes()
        return t

    was_training = module.training
    module.train()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(*inputs)
    finally:
        module.train(was_training)
    return sum(seen.values())


def activation_bytes_per_image(module, make_inputs) -> int:
    """Activation memory of one more image in a training batch: measured at batch 3 minus batch 2.

    ``make_inputs(batch)`` gives the module's inputs for that batch size (train-mode BatchNorm needs at
    least 2 images)."""
    return saved_activation_bytes(module, *make_inputs(3)) - saved_activation_bytes(module, *make_inputs(2))


def format_flops(flops: int) -> str:
    for unit, scale in (("GFLOPs", 1e9), ("MFLOPs", 1e6), ("kFLOPs", 1e3)):
        if flops >= scale:
            return f"{flops / scale:,.2f} {unit}"
    return f"{flops} FLOPs"


def format_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{int(n)} B"


def measure(cfg) -> dict:
    """Parameters, forward FLOPs per image and activation bytes per image of the config's G and D."""
    import torch

    from ganforge import nets

    G, D = nets.build(cfg)
    G, D = G.to("meta"), D.to("meta")
    nz, c, s, k = cfg.model.nz, cfg.data.channels, cfg.data.image_size, cfg.model.num_classes
    z = lambda b: torch.zeros(b, nz, device="meta")  # noqa: E731
    y = lambda b: torch.zeros(b, dtype=torch.long, device="meta") if k else None  # noqa: E731
    x = lambda b: torch.zeros(b, c, s, s, device="meta")  # noqa: E731
    return {
        "G": G, "D": D,
        "g_params": count_parameters(G), "d_params": count_parameters(D),
        "g_trained": count_parameters(G, True), "d_trained": count_parameters(D, True),
        "g_flops": forward_flops(G, z(1), y(1)), "d_flops": forward_flops(D, x(1), y(1)),
        "g_act": activation_bytes_per_image(G, lambda b: (z(b), y(b))),
        "d_act": activation_bytes_per_image(D, lambda b: (x(b), y(b))),
    }


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
    # The G step keeps G's and D's activations of the same images at once (D's step: D on real and fake).
    per_image = max(m["g_act"] + m["d_act"], 2 * m["d_act"])
    trained = m["g_trained"] + m["d_trained"]  # frozen weights have no gradients and no Adam moments
    fixed = trained * BYTES_PER_PARAMETER_TRAINING + (m["g_params"] + m["d_params"] - trained) * 4
    batch = cfg.data.batch_size
    print(f"\nTraining memory, about: {format_bytes(fixed)} for weights, gradients and Adam's moments, plus "
          f"{format_bytes(per_image)} per image of the batch (data.batch_size={batch}: "
          f"{format_bytes(fixed + batch * per_image)} at float32; mixed precision roughly halves the activations)")
    return 0
