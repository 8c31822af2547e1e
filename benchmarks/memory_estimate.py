"""How well the memory estimate of a training step (``ganforge.nets.measure.training_memory``, which
``--dry-run`` prints and the recipe fits a GPU's batch with) matches what a real step takes, on the CPU.

For each config, two real runs of a few steps (``ganforge.train``, real images on disk) at a small and a
large batch, each in a fresh process, report their peak resident memory (``ru_maxrss``); what the
larger batch adds, per image, is the measured cost of an image, against the estimate's ``per_image``
(float32: a CPU run has no mixed precision).  Whatever does not grow with the batch (the interpreter,
torch, the data, the weights) cancels in the difference.  The ratio measured / predicted is printed
and written to ``benchmarks/results/memory_estimate.json``.

    python benchmarks/memory_estimate.py                    # the recipe's GPU model (FastGAN, width 32) and DCGAN
    python benchmarks/memory_estimate.py --batches 16 64 --steps 2
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Configs measured: the recipe's GPU choice for a small 32 px colour set (FastGAN at width 32 with R1, R2
#: and feature matching), and the quickstart DCGAN at 64 px.
CONFIGS = {
    "recipe-gpu-fastgan32": ["model.name=fastgan", "model.ngf=32", "model.ndf=32", "model.fastgan_decoder=32",
                             "model.spectral_norm=true", "loss.name=rpgan", "loss.r1_gamma=0.2", "loss.r2_gamma=0.2",
                             "loss.r1_every=4", "loss.feature_match=1.0", "ema.enabled=true",
                             "augment.name=diffaugment", "augment.policy=[translation,cutout]", "data.image_size=32"],
    "dcgan64": ["model.name=dcgan", "data.image_size=64"],
}

CHILD = r"""
import json, resource, sys
from ganforge import config as C
from ganforge.api import train
overrides = json.loads(sys.argv[1])
cfg = C.load(overrides=overrides)
train(cfg, runs_dir=sys.argv[2], log_format="quiet")
print(json.dumps({"maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def write_images(folder: Path, n: int) -> None:
    """``n`` real Fashion-MNIST images as 40 px RGB PNGs (tinted, as the tests make them)."""
    import numpy as np
    from PIL import Image

    from ganforge.data.sources import DEBIAN_FASHION_MNIST, _read_idx
    images = _read_idx(DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz")[:n]
    folder.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(images):
        tint = np.array([(i * 37) % 256, (i * 91) % 256, (i * 53) % 256], dtype=np.float32) / 255.0
        img = Image.fromarray(arr, "L").resize((40, 40), Image.BILINEAR)
        a = np.asarray(img, dtype=np.float32)[..., None] * (0.5 + 0.5 * tint)
        Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGB").save(folder / f"img_{i:05d}.png")


def peak_rss(overrides: list[str], runs: Path) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(overrides), str(runs)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["maxrss_bytes"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    ap.add_argument("--batches", nargs=2, type=int, default=[16, 128], metavar=("SMALL", "LARGE"))
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "memory_estimate.json")
    args = ap.parse_args()

    from ganforge import config as C
    from ganforge.nets.measure import format_bytes, training_memory

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        write_images(images, 2 * args.batches[1])
        for name in args.configs:
            base = [f"data.source={images}", "data.channels=3", "data.num_workers=0", "train.device=cpu",
                    "train.compile=off", "train.amp=off", "train.report=false", "train.tensorboard=false",
                    f"train.max_steps={args.steps}", "train.log_every=1", *CONFIGS[name]]
            small, large = args.batches
            rss = {b: peak_rss(base + [f"data.batch_size={b}"], Path(tmp) / f"runs-{name}-{b}") for b in (small, large)}
            measured = (rss[large] - rss[small]) / (large - small)
            memory = training_memory(C.load(overrides=base + [f"data.batch_size={large}"]))
            row = {"config": name, "batches": [small, large], "peak_rss": {str(b): v for b, v in rss.items()},
                   "measured_per_image": round(measured), "predicted_per_image": memory.per_image,
                   "peak": memory.parts, "ratio_measured_to_predicted": round(measured / memory.per_image, 3)}
            results.append(row)
            print(f"{name}: per image measured {format_bytes(measured)} (peak RSS {format_bytes(rss[small])} at "
                  f"batch {small}, {format_bytes(rss[large])} at {large}), predicted {format_bytes(memory.per_image)} "
                  f"({memory.parts}): ratio {row['ratio_measured_to_predicted']:.2f}", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"device": "cpu", "steps": args.steps, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
