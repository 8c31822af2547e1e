"""Image quality of training recipes: the PyTorch tutorial's against a modern one, for the same steps.

Both recipes train the same DCGAN-shaped networks (the quickstart preset: 32x32, ngf = ndf = 32,
nz = 100) on the same few thousand real Fashion-MNIST images with the same batch size, seed and number
of generator steps.  They differ only in the training strategies:

- ``tutorial``: BCE (non-saturating) loss, BatchNorm in D, Adam 2e-4 (0.5, 0.999), nothing else;
- ``modern``: spectral normalisation in D (no BatchNorm there), hinge loss, an EMA of G's weights
  (decay 0.999 with warm-up) for sampling, and DiffAugment (color, translation, cutout) on both
  batches: the ingredients of SNGAN/BigGAN-style training plus data-efficient augmentation;
- a few one-change variants (``--recipes``) to see which ingredient does what: ``tutorial+ema``,
  ``tutorial+diffaugment``, ``tutorial+sn-hinge``.

Quality is FID (and KID) between 500 generated images (``--n-eval``) and as many real images of the
same dataset, computed by ``ganforge.metrics`` on features of the offline EfficientNet-Lite0 extractor (``fid_effnet_lite0``:
lower is better; not comparable with published Inception FIDs).  The discriminator plays no part in
the score.  Generated images come from the generator each recipe samples with (the EMA copy for
``modern``), always for the same latents.

Results: ``benchmarks/results/strategies-<time>.json`` and the last fixed-noise grid of each recipe
(``--grids DIR``, the docs use ``docs/images``).

    python benchmarks/strategies.py                       # 600 steps per recipe: 25 min on 2 heavily shared cores
    python benchmarks/strategies.py --steps 3000 --images 10000 --recipes tutorial modern tutorial+ema
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import ganforge
from ganforge import config as C

RESULTS = Path(__file__).parent / "results"
RECIPES = {
    "tutorial": [],
    "modern": ["model.spectral_norm=true", "model.d_batchnorm=false", "loss.name=hinge",
               "ema.enabled=true", "ema.decay=0.999", "augment.name=diffaugment"],
    "tutorial+ema": ["ema.enabled=true", "ema.decay=0.999"],
    "tutorial+diffaugment": ["augment.name=diffaugment"],
    "tutorial+sn-hinge": ["model.spectral_norm=true", "model.d_batchnorm=false", "loss.name=hinge"],
}


def recipe_config(recipe: str, args) -> C.Config:
    return C.load(preset="quickstart", overrides=[
        "data.source=fashion-mnist", f"data.limit={args.images}", f"data.batch_size={args.batch}",
        "data.num_workers=0", f"train.max_steps={args.steps}", f"train.seed={args.seed}",
        f"train.log_every={max(1, args.steps // 20)}", "train.tensorboard=false", "train.report=false",
        f"train.device={args.device}", "train.compile=off", "eval.every=0", *RECIPES[recipe]])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="+", default=["tutorial", "modern"], choices=sorted(RECIPES))
    p.add_argument("--steps", type=int, default=600, help="generator steps per recipe")
    p.add_argument("--images", type=int, default=5000, help="first N Fashion-MNIST training images")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-eval", type=int, default=500, help="generated (and real) images for FID/KID")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", type=Path, help="where the runs go (default: a temporary folder)")
    p.add_argument("--grids", type=Path, help="copy each recipe's last sample grid here as strategies_<recipe>.png")
    p.add_argument("--out", type=Path, help="results JSON (default: benchmarks/results/strategies-<time>.json)")
    args = p.parse_args(argv)

    from ganforge.metrics import evaluate  # the evaluation issue's metric (EfficientNet-Lite0 features)

    work = args.work or Path(tempfile.mkdtemp(prefix="ganforge-strategies-"))
    rows = []
    for recipe in args.recipes:
        cfg = recipe_config(recipe, args)
        t0 = time.perf_counter()
        run = ganforge.train(cfg, runs_dir=work, log_format="quiet")
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = evaluate(run, "fashion-mnist", metrics=("fid", "kid"), features="effnet-lite0", n=args.n_eval,
                          cfg=cfg, device=args.device)
        eval_s = time.perf_counter() - t0
        last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        row = {"recipe": recipe, "overrides": RECIPES[recipe], "train_seconds": round(train_s, 1),
               "eval_seconds": round(eval_s, 1), **{k: round(v, 5) for k, v in scores.items() if isinstance(v, float)},
               "n_generated": scores["n_generated"], "n_real": scores["n_real"],
               "last_log": {k: last[k] for k in ("loss_d", "loss_g", "d_x", "d_g_z", "grad_norm_d", "grad_norm_g")
                            if k in last}}
        rows.append(row)
        print(f"{recipe:22s} FID {row['fid_effnet_lite0']:8.3f}  KID {row['kid_effnet_lite0']:.4f}  "
              f"train {train_s:6.1f}s  eval {eval_s:5.1f}s", flush=True)
        if args.grids:
            grids = sorted((run / "samples").glob("*.png"), key=lambda q: q.stat().st_mtime)
            args.grids.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(grids[-1], args.grids / f"strategies_{recipe}.png")

    baseline = next((r for r in rows if r["recipe"] == "tutorial"), rows[0])
    print(f"\n| recipe | FID (EfficientNet-Lite0) | KID | FID / {baseline['recipe']} | train s |")
    print("|---|---|---|---|---|")
    for r in rows:
        r["fid_ratio_to_" + baseline["recipe"].replace("+", "_")] = round(r["fid_effnet_lite0"] / baseline["fid_effnet_lite0"], 3)
        print(f"| {r['recipe']} | {r['fid_effnet_lite0']:.2f} | {r['kid_effnet_lite0']:.4f} | "
              f"{r['fid_effnet_lite0'] / baseline['fid_effnet_lite0']:.2f} | {r['train_seconds']:.0f} |")

    out = args.out or RESULTS / f"strategies-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "strategies", "command": " ".join(["python", "benchmarks/strategies.py", *(argv or sys.argv[1:])]),
        "steps": args.steps, "images": args.images, "batch": args.batch, "n_eval": args.n_eval, "seed": args.seed,
        "device": args.device, "machine": f"{platform.processor() or platform.machine()}, "
                                          f"{torch.get_num_threads()} threads", "torch": torch.__version__,
        "metric": "fid_effnet_lite0 (lower is better)", "rows": rows}, indent=2))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
