"""Image quality in a fixed wall-clock budget: the tutorial's recipe against ganforge's default recipe.

For each dataset, both recipes train on the same machine for the same training time (default 12 minutes
on a CPU), then 1,000 samples of each are scored against the real set with FID and KID on features of the
offline EfficientNet-Lite0 extractor (``fid_effnet_lite0``, ``kid_effnet_lite0``: lower is better; not
comparable with published Inception FIDs).  As a yardstick the script also scores two halves of the real
set against each other (the best a generator can hope for) and uniform noise against it (the worst).

Datasets:

- ``emoji``: Google's Noto emoji at 64x64 (npm ``emoji-datasource-google@16.0.0``, Apache-2.0), the
  images without skin-tone variants, composited on white.  Installed with npm into ``--work`` if missing.
- ``fashion``: Fashion-MNIST at 32x32, grey (Debian ``dataset-fashion-mnist``, MIT).

Recipes:

- ``tutorial``: the PyTorch DCGAN tutorial (``--preset dcgan-celeba64`` at the dataset's size and channels);
- ``default``: what ``ganforge train --data DIR`` chooses with no preset (``ganforge.recipe``).

Writes ``benchmarks/results/quality-<time>.json``, one sample grid per run (``--grids``, default
``docs/images``), and prints a table.  Every run is reported, including the ones that fail.

    python benchmarks/quality.py                                   # both datasets, 12 minutes per run
    python benchmarks/quality.py --datasets emoji --minutes 3      # a quicker look
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

import ganforge
from ganforge import config as C
from ganforge.data import open_source
from ganforge.metrics import evaluate
from ganforge.recipe import auto_config
from ganforge.sampling import generate, load_generator, save_grid

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
EMOJI_PACKAGE = "emoji-datasource-google@16.0.0"
SKIN_TONES = ("-1f3fb", "-1f3fc", "-1f3fd", "-1f3fe", "-1f3ff")


def emoji_folder(work: Path) -> Path:
    """A folder of the emoji without skin-tone variants (symbolic links into the npm package)."""
    pkg = work / "npm" / "node_modules" / "emoji-datasource-google" / "img" / "google" / "64"
    if not pkg.is_dir():
        print(f"installing {EMOJI_PACKAGE} with npm into {work / 'npm'} ...", flush=True)
        subprocess.run(["npm", "install", "--prefix", str(work / "npm"), "--no-save", "--no-package-lock",
                        "--ignore-scripts", EMOJI_PACKAGE], check=True, stdout=subprocess.DEVNULL)
    folder = work / "emoji64"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for f in sorted(pkg.glob("*.png")):
            if not any(t in f.name for t in SKIN_TONES):
                (folder / f.name).symlink_to(f)
    return folder


DATASETS = {
    "emoji": dict(size=64, channels=3, source=emoji_folder),
    "fashion": dict(size=32, channels=1, source=lambda work: "fashion-mnist"),
}


def tutorial_config(source: str, size: int, channels: int, common: list[str]) -> C.Config:
    return C.load(preset="dcgan-celeba64", overrides=[
        f"data.source={source}", f"data.image_size={size}", f"data.channels={channels}", "train.epochs=100000",
        *common])


def default_config(source: str, size: int, channels: int, common: list[str]) -> C.Config:
    # The recipe plans about 5,000 steps (train.epochs); here the time budget alone decides the length,
    # as it does for the tutorial, so both train for the same minutes.
    return auto_config(source, [f"data.image_size={size}", "train.epochs=100000", *common])


def real_images(cfg: C.Config, limit: int = 10_000, image_size: int | None = None) -> torch.Tensor:
    """The real set as ``cfg`` reads it, unflipped; at ``image_size`` instead of the run's if given."""
    data = {**cfg.to_dict()["data"], "hflip": 0.0, **({"image_size": image_size} if image_size else {})}
    ds = open_source(C.from_dict({**cfg.to_dict(), "data": data}))
    n = min(len(ds), limit)
    return torch.stack([ds[i][0] for i in range(n)])


def yardsticks(reals: torch.Tensor, n: int) -> dict:
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(reals.shape[0], generator=g)
    half = reals.shape[0] // 2
    a, b = reals[perm[:half]], reals[perm[half:]]
    noise = (torch.rand((n, *reals.shape[1:]), generator=g) * 255).to(torch.uint8)
    m = ["fid", "kid"]
    return {"real_half_vs_half": evaluate(a, b, metrics=m, n=n), "noise_vs_real": evaluate(noise, reals, metrics=m, n=n)}


def score_run(run: Path, reals: torch.Tensor, n: int, grid: Path) -> dict:
    """FID and KID of ``n`` samples of a finished run (latents of seed 123) against ``reals``, and a grid
    of the first 64 saved at ``grid``."""
    G, run_cfg = load_generator(run)
    fakes = generate(G, torch.randn(n, run_cfg.model.nz, generator=torch.Generator().manual_seed(123)))
    scores = evaluate(fakes, reals, metrics=["fid", "kid"], n=n)
    return {**scores, "grid": str(save_grid(fakes[:64], grid))}


def run_one(name: str, cfg: C.Config, reals: torch.Tensor, n: int, work: Path, grids: Path) -> dict:
    t = time.time()
    entry = {"recipe": name, "preset": cfg.preset, "notes": cfg.notes}
    try:
        run = ganforge.train(cfg, runs_dir=work / "runs", log_format="quiet")
        summary = json.loads((run / "summary.json").read_text())
        scores = score_run(run, reals, n, grids / f"quality_{name}.png")
        entry.update(status=summary["status"], run=str(run), steps=summary["step"],
                     images_seen=summary["images_seen"], train_seconds=summary["train_seconds"],
                     diagnostics=summary.get("diagnostics", []), **scores)
    except Exception as e:  # noqa: BLE001 - a failed run is a result too
        entry.update(status=f"failed: {type(e).__name__}: {e}")
    entry["wall_seconds"] = round(time.time() - t, 1)
    return entry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--recipes", nargs="+", default=["tutorial", "default"], choices=["tutorial", "default"])
    ap.add_argument("--minutes", type=float, default=12.0, help="training time per run (default 12)")
    ap.add_argument("--n", type=int, default=1000, help="generated images per score (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="train.seed of every run (the noise between seeds is large)")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "ganforge" / "bench-quality")
    ap.add_argument("--grids", type=Path, default=ROOT.parent / "docs" / "images")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    common = [f"train.max_minutes={args.minutes}", "train.tensorboard=false", "train.report=false",
              "train.log_every=100", f"train.seed={args.seed}"]
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                           "device": "cuda" if torch.cuda.is_available() else "cpu", "torch": torch.__version__},
               "minutes": args.minutes, "n": args.n, "features": "effnet-lite0", "datasets": {}}
    builders = {"tutorial": tutorial_config, "default": default_config}
    for ds_name in args.datasets:
        spec = DATASETS[ds_name]
        source = str(spec["source"](args.work))
        probe = tutorial_config(source, spec["size"], spec["channels"], common)
        reals = real_images(probe)
        block = {"source": source, "real_images": int(reals.shape[0]), "yardsticks": yardsticks(reals, args.n),
                 "runs": []}
        print(f"\n{ds_name}: {reals.shape[0]} real images; yardsticks {json.dumps(block['yardsticks'])}", flush=True)
        for recipe in args.recipes:
            cfg = builders[recipe](source, spec["size"], spec["channels"], common)
            name = f"{ds_name}_{recipe}" + (f"_seed{args.seed}" if args.seed else "")  # seed 0's grids are the docs'
            entry = run_one(name, cfg, reals, args.n, args.work, args.grids)
            entry["seed"] = args.seed
            block["runs"].append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "notes"}), flush=True)
        results["datasets"][ds_name] = block
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"quality-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\n{'dataset':<9} {'recipe':<9} {'steps':>6} {'FID':>8} {'KID':>8}  status")
    for ds_name, block in results["datasets"].items():
        for e in block["runs"]:
            print(f"{ds_name:<9} {e['recipe'].split('_')[1]:<9} {e.get('steps', 0):>6} "
                  f"{e.get('fid_effnet_lite0', float('nan')):>8.1f} {e.get('kid_effnet_lite0', float('nan')):>8.3f}  {e['status']}")
        y = block["yardsticks"]
        print(f"{ds_name:<9} {'real/2':<9} {'':>6} {y['real_half_vs_half']['fid_effnet_lite0']:>8.1f} "
              f"{y['real_half_vs_half']['kid_effnet_lite0']:>8.3f}  two halves of the real set")
    for ds_name, block in results["datasets"].items():
        fids = {e["recipe"].split("_")[1]: e.get("fid_effnet_lite0") for e in block["runs"]}
        if fids.get("tutorial") and fids.get("default"):
            print(f"{ds_name}: default/tutorial FID ratio {fids['default'] / fids['tutorial']:.2f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
