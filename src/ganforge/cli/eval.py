"""ganforge eval: FID, KID, IS, precision/recall and the copy ratio of a run or checkpoint, or of one set of
images against another (``--real SOURCE --fake SOURCE``), as a table and a JSON file; or SWD (no network).
A run whose training used ImageNet features gets its ImageNet-feature scores labelled
(:mod:`ganforge.metrics.overlap`)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ganforge.cli.common import SOURCE_HELP, add_device, add_runs_dir


#: The most images --n asks for (each set's features are held in memory).
MAX_IMAGES = 1_000_000


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="score a run or checkpoint, or two sets of images: FID, KID, Inception Score, precision/recall, copy ratio",
        description="Score a generator against real images (ganforge eval RUN), or one set of images against "
                    "another (ganforge eval --real SOURCE --fake SOURCE: folders, zips, prepared or named sets). "
                    "A generator is sampled with its EMA weights when the run has them and a fixed latent seed, so "
                    "the same generator always gets the same numbers. Features of image sets are cached per "
                    "dataset, resolution and extractor (in $GANFORGE_CACHE/stats, default ~/.cache/ganforge/stats).")
    p.add_argument("source", metavar="RUN", nargs="?",
                   help=SOURCE_HELP + " (its generator.pt: EMA weights if any); leave out with --fake")
    p.add_argument("--real", "--data", dest="real", metavar="SOURCE",
                   help="real images to compare with: a folder, zip, prepared or named set (default for a run: "
                        "its data.source)")
    p.add_argument("--fake", metavar="SOURCE",
                   help="images to score instead of a generator's: a folder, zip, prepared or named set (a run or "
                        "checkpoint here is sampled as RUN is); needs --real")
    p.add_argument("--size", type=int, metavar="PX",
                   help="with --fake: the resolution both sets are read at (default: the fake images' own, their "
                        "median shorter side; a prepared set's size)")
    p.add_argument("--n", type=int, default=10000,
                   help="generated (or fake) images, and as many real ones; all of a set when it has fewer "
                        "(default 10000)")
    p.add_argument("--metrics",
                   help="comma-separated, from fid,kid,is,pr,copy (default: all that the features give; dinov2 has "
                        "no Inception Score; swd is a metric itself and takes none)")
    p.add_argument("--features", choices=["inception", "effnet-lite0", "effnet-lite2", "dinov2", "swd"],
                   help="feature extractor (default: the run's eval.features, effnet-lite0 for two sets). "
                        "'inception' gives numbers comparable with papers; 'effnet-lite0' works offline but its "
                        "numbers are its own; 'dinov2' is FD-DINOv2 (its weights download once); 'swd' needs no "
                        "network: the sliced Wasserstein distance of Laplacian-pyramid patches, per level and mean")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="local Inception-v3 FID weights (weights-inception-2015-12-05-6726825d.pth); default: the "
                        "run's eval.inception_weights, then torch hub's checkpoints folder")
    p.add_argument("--seed", type=int, default=0, help="latent seed of a generator's images (default 0)")
    add_device(p)
    p.add_argument("--out", metavar="FILE.json",
                   help="where the JSON goes (default: RUN/eval/<checkpoint>-<features>-n<N>.json; with --fake: "
                        "./eval/<fake>-vs-<real>-<features>-n<N>.json)")
    p.add_argument("--no-cache", action="store_true", help="recompute the image sets' features (and do not store them)")
    add_runs_dir(p)
    return p


def _metrics(asked: str | None, features: str) -> list[str]:
    """The metrics to compute: those asked for, else every one that ``features`` gives."""
    from ganforge.metrics.evaluate import METRICS, metrics_for
    from ganforge.metrics.features import NO_CLASSIFIER

    if asked is None:
        return [m for m in METRICS if not (m == "is" and features in NO_CLASSIFIER)]
    return metrics_for(features, asked)


def format_table(report: dict, labelled: list[str] = ()) -> str:
    """The scores as a two-column table; those in ``labelled`` marked as sharing ImageNet features with
    training."""
    from ganforge.metrics.overlap import SHARED_LABEL

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
        if key in labelled:
            text += f"  ({SHARED_LABEL})"
        rows.append((name, text))
    width = max(len(r[0]) for r in rows) if rows else 6
    return "\n".join([f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 12}"] +
                     [f"{name:<{width}}  {text}" for name, text in rows])


def _is_generator(path: Path) -> bool:
    """Whether ``path`` is something ganforge samples from (a run, a checkpoint or generator file, an export)
    rather than a set of images (a run directory holds images too, its sample grids: never to be scored)."""
    from ganforge.runfiles import is_run_dir
    return is_run_dir(path) or (path / "generator.safetensors").is_file() or (path.is_file() and path.suffix == ".pt")


def _slug(source: str) -> str:
    import re
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(source).rstrip("/")).name or "data")[:40]


def _check_source(flag: str, spec: str) -> None:
    """A set of images that is not there: say so in the words of this command (before any work)."""
    import os

    from ganforge.config import ConfigError
    from ganforge.data.index import split_zip_source
    from ganforge.data.sources import NAMED

    zip_parts = split_zip_source(spec)
    path = zip_parts[0] if zip_parts else Path(os.path.expanduser(spec))
    if spec not in NAMED and not path.exists():
        raise ConfigError(f"{flag} {spec} does not exist: give a folder of images, a zip (zip:inner/folder works), "
                          f"a prepared set (ganforge prepare) or a named dataset ({', '.join(sorted(NAMED))})")


def _prepared_size(spec: str) -> int | None:
    """The size a prepared set was made at (its images are read as stored), None for other sources."""
    import os

    from ganforge.data.prepared import is_prepared, read_manifest

    path = Path(os.path.expanduser(spec))
    return int(read_manifest(path)["size"]) if path.is_dir() and is_prepared(path) else None


def _common_size(fake: str, real: str, asked: int | None) -> int:
    """The resolution both sets are read at: --size, else a prepared set's, else the fake images' own."""
    from ganforge.config import ConfigError
    from ganforge.recipe import inspect

    prepared = {flag: size for flag, spec in (("--fake", fake), ("--real", real))
                if (size := _prepared_size(spec)) is not None}
    size = asked or next(iter(prepared.values()), None) or inspect(fake).shorter_side
    for flag, at in prepared.items():
        if at != size:
            spec = fake if flag == "--fake" else real
            raise ConfigError(f"{flag} {spec} is a prepared set at {at}x{at}, but the other set is read at {size}: "
                              f"give --size {at}, or prepare it again with ganforge prepare --size {size}")
    return size


def _two_sets(args) -> str | None:
    """The fake image set when ``args`` ask to score two sets; None when a generator is scored."""
    from ganforge.config import ConfigError

    if args.real is not None:
        _check_source("--real", args.real)
    if args.fake is None:
        if args.source is None:
            raise ConfigError("give a RUN to score (a run directory, a run's name, 'latest', a checkpoint or an "
                              "export), or two sets of images with --real SOURCE --fake SOURCE")
        if args.size is not None:
            raise ConfigError(f"--size {args.size} goes with --fake: a run's images are read at its data.image_size")
        return None
    if args.source is not None:
        raise ConfigError(f"give a RUN ({args.source}) or --fake {args.fake}, not both: --fake scores a set of "
                          "images in place of a generator's")
    if args.real is None:
        raise ConfigError(f"--fake {args.fake} needs --real SOURCE: the images to compare it with")
    if args.size is not None and not 8 <= args.size <= 4096:
        raise ConfigError(f"--size {args.size}: give 8 to 4096 pixels")
    _check_source("--fake", args.fake)
    if _is_generator(Path(args.fake).expanduser()):
        args.source, args.fake = args.fake, None  # a run or a generator file: sampled as RUN is
        return None
    return args.fake


def run(args) -> int:
    import contextlib
    import dataclasses

    import torch

    from ganforge.cli.common import pick_device
    from ganforge.config import ConfigError
    from ganforge.metrics import overlap
    from ganforge.metrics.evaluate import METRICS, check_metrics, evaluate, evaluate_sources
    from ganforge.metrics.features import check_features
    from ganforge.runfiles import RunDir, resolve_source
    from ganforge.storage import RunLock, atomic_write_text

    if not 2 <= args.n <= MAX_IMAGES:
        raise ConfigError(f"--n must be from 2 to {MAX_IMAGES:,} images, got {args.n}")
    if not 0 <= args.seed < 2**63:
        raise ConfigError(f"--seed must be from 0 to 2**63 - 1, got {args.seed}")
    check_metrics(args.metrics or ",".join(METRICS))
    fake = _two_sets(args)
    device = pick_device(args.device)
    t0 = time.perf_counter()
    training = None  # the run's config, whose training may share ImageNet features with the scores
    if fake is not None:
        features = check_features(args.features or "effnet-lite0")
        metrics = _metrics(args.metrics, features)
        size = _common_size(fake, args.real, args.size)
        out = Path(args.out) if args.out else (
            Path(RunDir.EVAL) / f"{_slug(fake)}-vs-{_slug(args.real)}-{features}-n{args.n}.json")
        head = {"source": fake, "fake": fake, "data": args.real, "real": args.real, "image_size": size,
                "features": features, "metrics": metrics, "seed": None}

        def score() -> dict:
            return evaluate_sources(fake, args.real, size, metrics=metrics, features=features, n=args.n,
                                    device=device, inception_weights=args.inception_weights or "",
                                    use_cache=not args.no_cache)
    else:
        from ganforge.sampling import load_generator

        source = resolve_source(args.source, args.runs_dir)
        G, cfg, _ = load_generator(source, device=device)
        features = check_features(args.features or cfg.eval.features)
        metrics, training = _metrics(args.metrics, features), cfg
        weights = args.inception_weights or cfg.eval.inception_weights
        if args.real:
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=args.real))
        run_dir = RunDir.containing(source)
        folder = run_dir.eval if run_dir else (source if source.is_dir() else source.parent) / RunDir.EVAL
        label = source.stem if source.is_file() else "run"
        out = Path(args.out) if args.out else folder / f"{label}-{features}-n{args.n}.json"
        head = {"source": str(source), "data": cfg.data.source, "image_size": cfg.data.image_size,
                "features": features, "metrics": metrics, "seed": args.seed}

        def score() -> dict:
            return evaluate(G, cfg, metrics=metrics, features=features, n=args.n, cfg=cfg, seed=args.seed,
                            device=device, inception_weights=weights, use_cache=not args.no_cache)
    if features == "swd":
        head["metrics"] = ["swd"]  # a metric in itself: --metrics does not apply
    # Writing into a run directory (its eval/ folder, the default) makes this a writer of that run: refused
    # at once while another process (its training) holds the run's lock.  With --out elsewhere it only reads.
    into_run = RunDir.containing(out.parent)
    hint = " (or give --out FILE outside the run to score it while it trains)"
    with RunLock(into_run.path, "eval", hint=hint) if into_run else contextlib.nullcontext():
        report = score()
        seconds = time.perf_counter() - t0
        shared = overlap.shared_keys(training, report)
        if shared:
            head["shares_imagenet_features_with_training"] = overlap.training_imagenet_features(training)
        result = {**head, **report, "seconds": round(seconds, 2), "device": str(device), "torch": torch.__version__,
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, indent=2))
    what = f"{fake}: {report['n_generated']} images" if fake is not None else \
        f"{source}: {report['n_generated']} generated"
    seed = f", seed {args.seed}" if fake is None else ""
    print(f"{what} vs {report['n_real']} real images of {head['data']} ({head['image_size']}px), "
          f"features {features}{seed}")
    print(format_table(report, labelled=shared))
    if features == "swd":
        print("note: swd is the sliced Wasserstein distance x 1e3 between 7x7 Laplacian-pyramid patches at each "
              "level (Karras et al. 2018); lower is better, and no network is involved")
    elif features == "dinov2" and "fid" in metrics:
        print("note: fid_dinov2 is FD-DINOv2 on ViT-S/14 (Stein et al. 2023 used ViT-L/14): compare it with "
              "ganforge's own numbers, not published ones")
    elif features != "inception" and "fid" in metrics:
        print(f"note: {features} scores are not comparable with published (Inception) FIDs")
    if shared:
        print(overlap.warning(training))
    print(f"wrote {out}")
    return 0
