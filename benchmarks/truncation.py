"""What truncation does to a trained generator: FID, KID and the grids at several psi, against psi = 1.

Truncation pulls latents towards the average (``ganforge sample --truncation PSI``); with BatchNorm it
samples with standing statistics (``--bn standing``, BigGAN's; ``ganforge.sampling``).  This scores the
same 1,000 latents (seed 123, as ``benchmarks/quality.py`` does) of one run's generator:

- the baseline: psi = 1 with batch statistics, what the benchmarks and the training grids show;
- psi = 1 with standing statistics, which tells the statistics' own effect apart from the truncation's;
- each ``--psi`` with standing statistics,

on EfficientNet-Lite0 and Lite2 features against the run's real set (FID: the first 1,000 images by name;
the independent scores: the evaluation subset, as quality.py's) and,
since truncation trades variety for recognisable samples, on the two scores that owe nothing to ImageNet
(SWD, and with ``--dataset`` that set's domain classifier: FD, the samples' confidence over the reals'), prints
each FID's ratio to the baseline's, writes ``benchmarks/results/truncation-<time>.json`` and one grid per
setting (``--grids``).

    python benchmarks/truncation.py RUN_DIR --psi 0.9 0.8 0.7 0.5 --dataset emoji --grids benchmarks/results/truncation
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATASETS, RESULTS, real_images, score_images  # noqa: E402

from ganforge.sampling import generate, load_generator, save_grid  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished run's directory")
    ap.add_argument("--psi", type=float, nargs="+", default=[0.9, 0.8, 0.7, 0.5])
    ap.add_argument("--n", type=int, default=1000, help="samples per setting (default 1000)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--grids", type=Path, default=RESULTS / "truncation")
    ap.add_argument("--dataset", choices=list(DATASETS), default=None,
                    help="the run's set in benchmarks/quality.py, for its domain classifier's scores")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    G, cfg, _ = load_generator(args.run)
    reals = real_images(cfg)
    z = torch.randn(args.n, cfg.model.nz, generator=torch.Generator().manual_seed(123))
    settings = [("batch", 1.0), ("standing", 1.0)] + [("standing", psi) for psi in args.psi]
    rows = []
    for bn_mode, psi in settings:
        t = time.perf_counter()
        fakes = generate(G, z, bn_mode=bn_mode, psi=psi)
        grid = save_grid(fakes[:64], args.grids / f"{args.run.name}_{bn_mode}_psi{psi:g}.png")
        scores = score_images(fakes, reals, args.n, dataset=args.dataset)
        rows.append({"bn": bn_mode, "psi": psi, **scores, "grid": str(grid),
                     "seconds": round(time.perf_counter() - t, 1)})
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    print(f"\n{'bn':9} {'psi':>4}  {'FID-EL0':>8} {'ratio':>6}  {'KID-EL0':>7}  {'FID-EL2':>8} {'ratio':>6}  copy-EL0"
          f"  {'SWD':>6}  {'dom-FD':>6}  conf/real")
    for r in rows:
        print(f"{r['bn']:9} {r['psi']:4.2f}  {r['fid_effnet_lite0']:8.1f} "
              f"{r['fid_effnet_lite0'] / base['fid_effnet_lite0']:6.3f}  {r['kid_effnet_lite0']:7.3f}  "
              f"{r['fid_effnet_lite2']:8.1f} {r['fid_effnet_lite2'] / base['fid_effnet_lite2']:6.3f}  "
              f"{r['copy_ratio_effnet_lite0']:8.2f}  {r['swd_mean']:6.1f}  {r.get('domain_fd', float('nan')):6.2f}  "
              f"{r.get('domain_confidence_ratio', float('nan')):9.3f}")
    out = RESULTS / f"truncation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    summary = json.loads((args.run / "summary.json").read_text())
    out.write_text(json.dumps({"run": str(args.run), "step": summary.get("step"), "preset": cfg.preset,
                               "dataset": cfg.data.source, "n": args.n, "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
