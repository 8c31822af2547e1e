"""Evaluation: do the offline scores rank image sets as they should, and what does an evaluation cost?

On Fashion-MNIST (Debian ``dataset-fashion-mnist``) at 32x32, RGB, ``--n`` images per set:

1. *Ranking.*  FID, KID, precision and recall with the offline EfficientNet-Lite0 features of a second
   real set (the baseline: the best a generator can do) and of damaged versions of it: Gaussian noise
   (sigma 0.1 and 0.3 of the [0, 1] range), a 3x3 box blur, and one class only (mode collapse).  Each
   FID is printed with its ratio to the baseline; a useful metric orders them real < blur/noise, and
   mode collapse shows up as lost recall.  SWD (``--features swd``, no network) scores the same sets
   against the same reference, per pyramid level and mean, with its ratio to the baseline.
2. *Cost.*  Feature extraction in images per second for effnet-lite0 and, when torch-fidelity is
   installed, Inception-v3 (with random weights of the right architecture: the same arithmetic as the
   real 91 MB file), and the time of a second evaluation against the cached real statistics compared
   with the first one (ratio).

Writes ``benchmarks/results/evaluation-<time>.json`` and prints a table.

    python benchmarks/evaluation.py               # n = 500
    python benchmarks/evaluation.py --n 200       # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ganforge import config as C
from ganforge.data import open_source
from ganforge.metrics import build_extractor, evaluate, score_features
from ganforge.metrics.evaluate import extract_features, score_swd

RESULTS = Path(__file__).resolve().parent / "results"


def real_sets(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, C.Config]:
    """Two disjoint random real sets, one set of a single class, and the config that reads the data."""
    cfg = C.load(preset="quickstart", overrides=["data.source=fashion-mnist", "data.channels=3", "data.image_size=32"])
    ds = open_source(cfg)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(1))
    a = torch.stack([ds[i][0] for i in order[:n].tolist()])
    b = torch.stack([ds[i][0] for i in order[n:2 * n].tolist()])
    labels = torch.tensor([ds[i][1] for i in order[n:].tolist()])
    one_class = torch.stack([ds[i][0] for i in order[n:][labels == 7][:n].tolist()])  # sneakers only
    return a, b, one_class, cfg


def damaged(images: torch.Tensor) -> dict[str, torch.Tensor]:
    x = images.float() / 255
    g = torch.Generator().manual_seed(2)
    out = {}
    for sigma in (0.1, 0.3):
        out[f"noise_{sigma}"] = (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)
    out["blur_3x3"] = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return {k: (v * 255).round().to(torch.uint8) for k, v in out.items()}


def throughput(name: str, images: torch.Tensor, **kwargs) -> float:
    extractor = build_extractor(name, **kwargs)
    extractor(images[:4])  # warm up
    t0 = time.perf_counter()
    for batch in images.split(50):
        extractor(batch)
    return images.shape[0] / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="images per set (default 500)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    os.environ["GANFORGE_CACHE"] = tempfile.mkdtemp(prefix="ganforge-bench-cache-")
    n = args.n
    reference, real, one_class, cfg = real_sets(n)
    sets = {"real (baseline)": real, **damaged(real), "one_class (collapse)": one_class}
    metrics = ["fid", "kid", "pr"]
    extractor = build_extractor("effnet-lite0")
    reference_features, _ = extract_features(extractor, reference.split(50))  # once, for every row
    rows = {}
    for name, images in sets.items():
        features, logits = extract_features(extractor, images.split(50))
        rows[name] = score_features(features, logits, reference_features, metrics, "effnet-lite0")
    # SWD (no network) on the same sets: each row against the same reference, timed.
    swd_seconds = []
    for name, images in sets.items():
        t0 = time.perf_counter()
        rows[name].update(score_swd(images.split(50), reference.split(50), n))
        swd_seconds.append(time.perf_counter() - t0)
    base = rows["real (baseline)"]["fid_effnet_lite0"]
    swd_base = rows["real (baseline)"]["swd_mean"]
    print(f"Fashion-MNIST 32x32, {n} vs {n} images, effnet-lite0 features (not comparable with Inception FIDs)")
    print(f"{'set':<22}{'FID':>9}{'x base':>8}{'KID':>9}{'prec':>7}{'recall':>8}{'SWD32':>8}{'SWD16':>8}{'SWD':>8}"
          f"{'x base':>8}")
    for name, r in rows.items():
        print(f"{name:<22}{r['fid_effnet_lite0']:>9.2f}{r['fid_effnet_lite0'] / base:>8.2f}{r['kid_effnet_lite0']:>9.4f}"
              f"{r['precision_effnet_lite0']:>7.2f}{r['recall_effnet_lite0']:>8.2f}{r['swd_32px']:>8.1f}"
              f"{r['swd_16px']:>8.1f}{r['swd_mean']:>8.1f}{r['swd_mean'] / swd_base:>8.2f}")
    print(f"SWD (x 1e3, levels 32 and 16 px): {sum(swd_seconds) / len(swd_seconds):.1f} s per set of {n} on average")

    # Cost: extraction speed, and a second evaluation against cached real statistics.
    speed = {"effnet-lite0": throughput("effnet-lite0", real[:100])}
    try:
        from torchvision.models import inception_v3
        import torch_fidelity  # noqa: F401
        weights = Path(os.environ["GANFORGE_CACHE"]) / "random-inception.pth"
        with torch.random.fork_rng():
            torch.save(inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False).state_dict(),
                       weights)
        speed["inception"] = throughput("inception", real[:20], inception_weights=str(weights))
    except ImportError:
        pass
    cached = {}
    for label in ("first (computes real features)", "second (cached real features)"):
        t0 = time.perf_counter()
        evaluate(one_class, cfg, metrics=["fid"], n=n)
        cached[label] = time.perf_counter() - t0
    first, second = cached.values()
    print("\nfeature extraction, images/s: " + ", ".join(f"{k} {v:.1f}" for k, v in speed.items()))
    print(f"evaluation of {n} images against Fashion-MNIST: first {first:.1f} s, second {second:.1f} s "
          f"(cache ratio {first / second:.2f}x)")
    result = {"benchmark": "evaluation", "n": n, "features": "effnet-lite0", "scores": rows,
              "fid_ratio_to_real_baseline": {k: r["fid_effnet_lite0"] / base for k, r in rows.items()},
              "swd_ratio_to_real_baseline": {k: r["swd_mean"] / swd_base for k, r in rows.items()},
              "swd_seconds_per_set": sum(swd_seconds) / len(swd_seconds),
              "images_per_s": speed, "eval_seconds": {"first": first, "second_cached": second,
                                                      "ratio": first / second},
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"evaluation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
