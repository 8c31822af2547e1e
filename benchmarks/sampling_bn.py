"""How a finished run's samples score with each way of taking BatchNorm's statistics when sampling.

``ganforge.sampling.generate`` samples BatchNorm generators with batch statistics by default (as the
training loop's grids do); ``bn_mode='running'`` uses the running statistics and ``'standing'`` BigGAN's
standing statistics.  For each run this scores the same 1,000 latents (seed 123, as
``benchmarks/quality.py`` draws them) with each mode on EfficientNet-Lite0 against the run's real set
and prints each mode's FID as a ratio of the default's (batch statistics in chunks of 256, what
``quality.py`` scores).  With ``model.latent_groups`` it also samples batches of 32 drawn as training
draws them (4 groups of 8), to see whether the groups' mix in a batch matters.

    python benchmarks/sampling_bn.py RUN_DIR [RUN_DIR ...] [--modes batch256,running] [--threads 2]

Writes ``benchmarks/results/sampling-bn-<time>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ganforge.modules.latent_groups import GroupedLatents
from ganforge.sampling import generate, load_generator

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The quality benchmark's own reals and scoring (with its cached real features), so the numbers compare.
from quality import real_images, score_images, tutorial_config  # noqa: E402

MODES = ("batch256", "batch32", "grouped32", "running", "standing")
RESULTS = Path(__file__).resolve().parent / "results"


def score_run(run: Path, modes: list[str], n: int) -> dict:
    G, cfg = load_generator(run)
    reals = real_images(tutorial_config(cfg.data.source, cfg.data.image_size, cfg.data.channels, []))
    z = torch.randn(n, cfg.model.nz, generator=torch.Generator().manual_seed(123))
    out = {"run": str(run), "seed": cfg.train.seed, "modes": {}}
    for mode in modes:
        kwargs, latents = {}, z
        if mode == "batch32":
            kwargs = {"chunk": 32}
        elif mode == "grouped32":
            if not cfg.model.latent_groups:
                continue
            torch.manual_seed(5)
            draw = GroupedLatents(cfg.model.nz, cfg.model.latent_groups)
            latents, kwargs = torch.cat([draw(32) for _ in range(-(-n // 32))])[:n], {"chunk": 32}
        elif mode in ("running", "standing"):
            kwargs = {"bn_mode": mode}
        fakes = generate(G, latents, **kwargs)
        scores = score_images(fakes, reals, n, features=("effnet-lite0",))
        out["modes"][mode] = {k: round(float(v), 4) for k, v in scores.items()}
        base = out["modes"].get("batch256", {}).get("fid_effnet_lite0")
        fid = scores["fid_effnet_lite0"]
        ratio = f" ({fid / base:.3f}x batch256)" if base else ""
        print(f"{run.name} seed {cfg.train.seed} {mode}: FID-EL0 {fid:.1f}, KID {scores['kid_effnet_lite0']:.3f}"
              f"{ratio}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="finished runs' directories (with generator.pt)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    ap.add_argument("--n", type=int, default=1000, help="samples per mode (default 1000)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        ap.error(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    if "batch256" in modes:  # the baseline first, so every other mode prints its ratio
        modes = ["batch256"] + [m for m in modes if m != "batch256"]
    torch.set_num_threads(args.threads)
    results = {"n": args.n, "threads": args.threads, "runs": [score_run(run, modes, args.n) for run in args.runs]}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"sampling-bn-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
