"""ganforge eval: FID, KID, IS and precision/recall of a run or checkpoint, as a table and a JSON file."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval", help="score a run or checkpoint: FID, KID, Inception Score, precision/recall",
        description="Score a generator against real images. Uses the EMA weights when the run has them and a fixed "
                    "latent seed, so the same generator always gets the same numbers. Real-data features are cached "
                    "per dataset, resolution and extractor (in $GANFORGE_CACHE/stats, default ~/.cache/ganforge/stats).")
    p.add_argument("source", metavar="RUN_OR_CHECKPOINT",
                   help="run directory (its generator.pt: EMA weights if any), or a checkpoint/generator file")
    p.add_argument("--data", metavar="SRC", help="real images to compare with (default: the run's data.source)")
    p.add_argument("--n", type=int, default=10000, help="generated images, and as many real ones (default 10000)")
    p.add_argument("--metrics", default="fid,kid,is,pr", help="comma-separated, from fid,kid,is,pr (default: all)")
    p.add_argument("--features", choices=["inception", "effnet-lite0"],
                   help="feature extractor (default: the run's eval.features). 'inception' gives numbers comparable "
                        "with papers; 'effnet-lite0' works offline but its numbers are its own")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="local Inception-v3 FID weights (weights-inception-2015-12-05-6726825d.pth); default: the "
                        "run's eval.inception_weights, then torch hub's checkpoints folder")
    p.add_argument("--seed", type=int, default=0, help="latent seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--out", metavar="FILE.json", help="where the JSON goes (default: RUN/eval/<checkpoint>-<features>-n<N>.json)")
    p.add_argument("--no-cache", action="store_true", help="recompute the real-data features (and do not store them)")
    return p


def _run_dir_of(path: Path) -> Path:
    """The run directory a run, checkpoint or generator file belongs to (the file's folder when none)."""
    if path.is_dir():
        return path
    for folder in (path.parent, path.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder
    return path.parent


def format_table(report: dict) -> str:
    rows, seen = [], set()
    for key, value in report.items():
        if key in seen or not isinstance(value, float):
            continue
        seen.add(key)
        name, text = key, f"{value:.6g}"
        for prefix in ("kid_", "is_"):
            std_key = key.replace(prefix, prefix + "std_", 1)
            if key.startswith(prefix) and not key.startswith(prefix + "std_") and std_key in report:
                text = f"{value:.6g} ± {report[std_key]:.2g}"
                seen.add(std_key)
        rows.append((name, text))
    width = max(len(r[0]) for r in rows) if rows else 6
    return "\n".join([f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 12}"] +
                     [f"{name:<{width}}  {text}" for name, text in rows])


def run(args) -> int:
    import dataclasses

    import torch

    from ganforge.config import ConfigError
    from ganforge.metrics import evaluate
    from ganforge.metrics.evaluate import check_metrics
    from ganforge.metrics.features import check_features
    from ganforge.sampling import load_generator
    from ganforge.training.checkpoint import atomic_write_text
    from ganforge.training.trainer import pick_device

    if args.n < 2:
        raise ConfigError(f"--n must be at least 2 images, got {args.n}")
    metrics = check_metrics(args.metrics)
    source = Path(args.source)
    if not source.exists():
        raise ConfigError(f"{source} does not exist: give a run directory or a checkpoint/generator file")
    device = pick_device(args.device)
    G, cfg = load_generator(source, device=device)
    features = check_features(args.features or cfg.eval.features)
    weights = args.inception_weights or cfg.eval.inception_weights
    if args.data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=args.data))
    t0 = time.perf_counter()
    report = evaluate(G, cfg, metrics=metrics, features=features, n=args.n, cfg=cfg, seed=args.seed, device=device,
                      inception_weights=weights, use_cache=not args.no_cache)
    seconds = time.perf_counter() - t0
    run_dir = _run_dir_of(source)
    label = source.stem if source.is_file() else "run"
    out = Path(args.out) if args.out else run_dir / "eval" / f"{label}-{features}-n{args.n}.json"
    result = {"source": str(source), "data": cfg.data.source, "image_size": cfg.data.image_size,
              "features": features, "metrics": metrics, "seed": args.seed, **report,
              "seconds": round(seconds, 2), "device": str(device), "torch": torch.__version__,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(f"{source}: {report['n_generated']} generated vs {report['n_real']} real images of {cfg.data.source} "
          f"({cfg.data.image_size}px), features {features}, seed {args.seed}")
    print(format_table(report))
    if features != "inception" and "fid" in metrics:
        print(f"note: {features} scores are not comparable with published (Inception) FIDs")
    print(f"wrote {out}")
    return 0
