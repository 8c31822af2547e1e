"""Recipe sweep on the emoji set: which changes to the default recipe buy image quality per step.

``benchmarks/quality.py`` answers the question the issue asks (tutorial against default recipe, same
wall-clock budget, quiet machine).  This script is how the default recipe was chosen: it trains one
*variant* (the default recipe plus a few overrides) for a fixed number of generator steps, scores it
with FID and KID on the offline EfficientNet-Lite0 features during training (``eval.every``) and at
the end, and appends one JSON line per run to ``benchmarks/results/quality_sweep.jsonl``, failures
included.  A step budget (not a time budget) keeps comparisons fair when several variants share the
machine; each variant's images/s is recorded so the time cost is visible too.  ``--minutes`` trains
for a wall-clock budget instead and scores the end as ``benchmarks/quality.py`` does; two such runs
sharing the machine (one thread each) compare with each other, not with the benchmark's quiet runs.

    python benchmarks/quality_sweep.py --list
    python benchmarks/quality_sweep.py baseline --steps 1000 --threads 1
    python benchmarks/quality_sweep.py custom --set optim.d.lr=4e-4 --steps 1000
    python benchmarks/quality_sweep.py custom --name g24 --minutes 12 --threads 1 --set model.ngf=24 model.ndf=12
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import ganforge  # noqa: E402
from ganforge import config as C  # noqa: E402
from ganforge.recipe import auto_config  # noqa: E402
from ganforge.reporting.rundata import read_metrics  # noqa: E402
from quality import DATASETS, emoji_folder, real_images, score_run  # noqa: E402

#: Variants: overrides on top of the default recipe (``ganforge train --data DIR``).
VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "aug-translation": ["augment.policy=[translation]"],
    "aug-color-translation": ["augment.policy=[color, translation]"],
    "aug-none": ["augment.name=none"],
    "betas0": ["optim.g.betas=[0.0, 0.99]", "optim.d.betas=[0.0, 0.99]"],
    "ttur": ["optim.g.lr=1e-4", "optim.d.lr=4e-4"],
    "lr-high": ["optim.g.lr=4e-4", "optim.d.lr=4e-4"],
    "batch32": ["data.batch_size=32"],
    "upsample": ["model.name=dcgan-upsample"],
    "ema-0.99": ["ema.decay=0.99"],
    "ema-0.995": ["ema.decay=0.995"],
    "width24": ["model.ngf=24", "model.ndf=24"],
    "width48": ["model.ngf=48", "model.ndf=48"],
    "nz64": ["model.nz=64"],
    "d16": ["model.ndf=16"],
    "g48-d16": ["model.ngf=48", "model.ndf=16"],
    "d24": ["model.ndf=24"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variant", nargs="?", default="baseline")
    ap.add_argument("--recipe", default="auto", help="the recipe the variant starts from: auto, or an earlier one "
                                                     "frozen in benchmarks/recipes (auto-v1 .. auto-v6)")
    ap.add_argument("--set", nargs="*", default=[], help="extra overrides (key=value) on top of the variant's")
    ap.add_argument("--name", default="", help="what to call the run in the results (default: the variant)")
    ap.add_argument("--steps", type=int, default=None, help="generator steps (default 1000; with --minutes, no limit)")
    ap.add_argument("--minutes", type=float, default=0.0,
                    help="train for this long instead (train.max_minutes; a --steps given is then an upper bound)")
    ap.add_argument("--evals", type=int, default=2, help="scores during training (evenly spaced; the last at the end)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "ganforge" / "bench-quality")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "quality_sweep.jsonl")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for name, ov in VARIANTS.items():
            print(f"{name:<24} {' '.join(ov)}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps is None:
        args.steps = 10**7 if args.minutes else 1000
    overrides = VARIANTS.get(args.variant, []) + list(args.set)
    source = str(emoji_folder(args.work))
    every = max(1, args.steps // max(1, args.evals)) if not args.minutes else 0  # a time budget: score at the end
    common = [f"train.max_steps={args.steps}", f"train.max_minutes={args.minutes}", "train.epochs=100000",
              f"train.seed={args.seed}", "train.tensorboard=false", "train.report=false", "train.log_every=100",
              f"eval.every={every}", "eval.metrics=[fid, kid]", "eval.n=1000", "data.num_workers=0"]
    frozen = ROOT / "recipes" / f"{args.recipe}-emoji.yaml"
    cfg = (C.load(file=frozen, overrides=[f"data.source={source}", *common, *overrides]) if frozen.is_file()
           else auto_config(source, [*common, *overrides], recipe=args.recipe))
    entry = {"variant": args.name or args.variant, "recipe": args.recipe, "overrides": overrides, "steps": args.steps,
             "minutes": args.minutes, "seed": args.seed,
             "threads": torch.get_num_threads(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.time()
    try:
        run = ganforge.train(cfg, runs_dir=args.work / "sweep", log_format="quiet")
        summary = json.loads((run / "summary.json").read_text())
        evals = [{"step": rec["step"], "fid": round(rec["fid_effnet_lite0"], 1), "kid": round(rec["kid_effnet_lite0"], 4)}
                 for rec in read_metrics(run / "metrics.jsonl") if "fid_effnet_lite0" in rec]
        if args.minutes:  # score the end of a time-budget run as benchmarks/quality.py does
            # Always against the real set at its own size: a variant that trains at another size is
            # judged on the same images (the feature extractor resizes both to 224).
            reals = real_images(cfg, image_size=DATASETS["emoji"]["size"])
            scores = score_run(run, reals, 1000, run / "final_grid.png")
            evals.append({"step": summary["step"], "fid": round(scores["fid_effnet_lite0"], 1),
                          "kid": round(scores["kid_effnet_lite0"], 4)})
        entry.update(status=summary["status"], run=str(run), evals=evals,
                     images_per_s=round(summary["images_seen"] / max(summary["train_seconds"], 1e-9), 1),
                     diagnostics=[message[:80] for message in summary.get("diagnostics", [])])
    except Exception as e:  # noqa: BLE001 - a failed run is a result too
        entry["status"] = f"failed: {type(e).__name__}: {e}"
    entry["wall_seconds"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
