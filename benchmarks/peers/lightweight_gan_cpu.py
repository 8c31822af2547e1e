"""Train lucidrains' lightweight-gan (the released package, unmodified) for a time budget, on a CPU if
there is no GPU, and write 1,000 samples of its EMA generator at each point of a training-time curve.

lightweight-gan asserts CUDA at import and moves every tensor with ``.cuda(rank)``.  On a machine without
a GPU this script maps those calls to the CPU before importing it: ``torch.cuda.is_available`` answers
True during the import, ``Tensor.cuda`` and ``Module.cuda`` return the object unchanged, and the
``torch.device('cuda:N')`` its training step builds becomes the CPU.  Nothing in the package's files is
changed; the training step is its own ``Trainer.train``, called in a loop as its ``cli.run_training`` does.

Run by ``benchmarks/quality.py --curve`` with the interpreter that has lightweight-gan installed:

    python lightweight_gan_cpu.py --data DIR --image-size 64 --points 3 6 12 --out OUT [--seed 0]

Scored generator: its EMA copy (``GE``) once that is on (after step 20,000), its G before (in eval mode,
as the package's own ``generate`` does).  Writes ``OUT/point_<minutes>/00000.png ...`` and ``OUT/curve.json`` (steps and images seen per point).
The small-data settings are the README's: ``--aug-prob 0.25 --aug-types [translation,cutout]``; the
other settings are the package's defaults (batch 10 with 4 accumulation steps, fmap_max 512).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import torch


def map_cuda_to_cpu() -> bool:
    """Make CUDA calls run on the CPU when there is no GPU; True when the mapping is on."""
    if torch.cuda.is_available():
        return False
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    return True


def import_lightweight_gan(on_cpu: bool):
    real_is_available = torch.cuda.is_available
    if on_cpu:
        torch.cuda.is_available = lambda: True  # its import-time assert
    try:
        import lightweight_gan
        import lightweight_gan.lightweight_gan as module
    finally:
        torch.cuda.is_available = real_is_available
    if on_cpu:
        # Its training step builds torch.device(f"cuda:{rank}") for two loss accumulators: give the
        # module a torch whose device() maps cuda to the CPU (everything else is torch itself).
        proxy = types.ModuleType("torch_on_cpu")
        proxy.__dict__.update({k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
        proxy.device = lambda spec=None, *a: torch.device("cpu") if "cuda" in str(spec) else torch.device(spec, *a)
        module.torch = proxy
    return lightweight_gan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--points", type=float, nargs="+", default=[3, 6, 12, 24], help="minutes of training")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--greyscale", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    on_cpu = map_cuda_to_cpu()
    lg = import_lightweight_gan(on_cpu)
    from PIL import Image

    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    model = lg.Trainer(name="curve", results_dir=str(args.out / "results"), models_dir=str(args.out / "models"),
                       batch_size=10, gradient_accumulate_every=4,  # the command line's defaults
                       image_size=args.image_size, aug_prob=0.25, aug_types=["translation", "cutout"],
                       greyscale=args.greyscale, num_workers=0, save_every=10**9, evaluate_every=10**9,
                       calculate_fid_every=None, hparams={}, use_aim=False, rank=0, world_size=1, is_ddp=False)
    model.clear()
    model.set_data_src(args.data)
    images_per_step = model.batch_size * model.gradient_accumulate_every
    points = sorted(args.points)
    record = {"package": f"lightweight-gan {getattr(lg, '__version__', '')}".strip(),
              "cuda_mapped_to_cpu": on_cpu, "settings": "aug-prob 0.25, aug-types [translation,cutout], defaults else",
              "images_per_step": images_per_step, "points": []}
    trained, t_start = 0.0, time.perf_counter()
    while points:
        t0 = time.perf_counter()
        model.train()
        trained += time.perf_counter() - t0
        if trained >= points[0] * 60:
            minutes = points.pop(0)
            folder = args.out / f"point_{minutes:g}"
            folder.mkdir(exist_ok=True)
            g = torch.Generator().manual_seed(123)
            # Its EMA starts at step 20,000 (before that GE is reset to a copy of G every 1,000 steps), so
            # a short run is scored on G, in eval mode as its own generate() does; GE after that.
            GE = model.GAN.GE if model.steps > 20_000 else model.GAN.G
            GE.eval()
            with torch.no_grad():
                for i in range(0, args.n, 100):
                    z = torch.randn(min(100, args.n - i), model.GAN.latent_dim, generator=g)
                    imgs = GE(z).clamp(0, 1).mul(255).add(0.5).clamp(0, 255).to(torch.uint8).cpu()
                    for j, img in enumerate(imgs):
                        arr = img.permute(1, 2, 0).numpy()
                        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(folder / f"{i + j:05d}.png")
            GE.train()
            record["points"].append({"minutes": minutes, "train_seconds": round(trained, 1), "steps": model.steps,
                                     "generator": "GE" if model.steps > 20_000 else "G",
                                     "images_seen": model.steps * images_per_step, "folder": str(folder)})
            print(json.dumps(record["points"][-1]), flush=True)
    record["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    (args.out / "curve.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
