"""What safe checkpoints cost: an atomic, checksummed save against a plain ``torch.save``, and the checks
a resume makes, for real training states of the presets' models.

For each preset the state is a real one: the :class:`~ganforge.training.trainer.Trainer`'s
``state_dict()`` (G, D, both Adam states, RNG, progress) after building the models, so the sizes are
those of real checkpoints.  Measured, median of ``--repeat`` runs each, in a temporary folder on the
same disk as ``--dir``:

- ``plain``: ``torch.save(state, path)``, what a training script usually does (not atomic, no fsync);
- ``plain+fsync``: the same, then ``os.fsync``: how much of the difference is only making it durable;
- ``ganforge``: ``CheckpointStore.save`` (serialise to memory, SHA-256, write a temporary file, fsync,
  rename, fsync the folder, rewrite the manifest the same way, prune to the last 3);
- ``verify``: ``latest_valid()`` (read the newest checkpoint back and check its SHA-256) and
  ``safe_load`` (``torch.load(weights_only=True)``), what ``--resume`` does before training.

The ratio ganforge / plain is the price of "nothing lost"; divide the ganforge time by the time between
checkpoints (one epoch, or ``train.midsave_steps``) for the share of training time it takes.

    python benchmarks/robustness_checkpoint.py                  # quickstart and dcgan-celeba64, ~1 min
    python benchmarks/robustness_checkpoint.py --repeat 10 --dir /scratch/runs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganforge import config as C
from ganforge.storage import CheckpointStore, safe_load
from ganforge.training.trainer import Trainer

RESULTS = Path(__file__).parent / "results"


def save_fsync(state: dict, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_preset(preset: str, folder: Path, repeat: int) -> dict:
    cfg = C.load(preset=preset, overrides=["train.device=cpu", "train.tensorboard=false", "train.report=false"])
    trainer = Trainer(cfg, folder / f"{preset}-run", log_format="quiet")
    state = trainer.state_dict()
    plain_dir = folder / f"{preset}-plain"
    plain_dir.mkdir()
    store = CheckpointStore(folder / f"{preset}-store", keep=3)
    step = iter(range(10**6))

    plain = timed(lambda: torch.save(state, plain_dir / "checkpoint.pt"), repeat)
    durable = timed(lambda: save_fsync(state, plain_dir / "checkpoint-fsync.pt"), repeat)
    safe = timed(lambda: store.save(state, next(step)), repeat)
    verify = timed(lambda: store.latest_valid(), repeat)
    path, _ = store.latest_valid()
    load = timed(lambda: safe_load(path), repeat)
    size = path.stat().st_size
    return {"preset": preset, "checkpoint_mb": round(size / 2**20, 2), "plain_save_s": round(plain, 4),
            "plain_fsync_save_s": round(durable, 4),
            "ganforge_save_s": round(safe, 4), "ratio": round(safe / plain, 2), "ratio_to_fsync": round(safe / durable, 2), "verify_s": round(verify, 4),
            "safe_load_s": round(load, 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["quickstart", "dcgan-celeba64"])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dir", default=None, help="where to write the checkpoints (default: the system's temp dir)")
    args = p.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for preset in args.presets:
            row = bench_preset(preset, Path(tmp), args.repeat)
            rows.append(row)
            print(f"{preset:>16}: {row['checkpoint_mb']:7.2f} MB  plain torch.save {row['plain_save_s'] * 1e3:8.1f} ms  "
                  f"+fsync {row['plain_fsync_save_s'] * 1e3:8.1f} ms  ganforge save {row['ganforge_save_s'] * 1e3:8.1f} ms "
                  f"(x{row['ratio']:.2f}, x{row['ratio_to_fsync']:.2f} of +fsync)  "
                  f"verify {row['verify_s'] * 1e3:7.1f} ms  safe_load {row['safe_load_s'] * 1e3:7.1f} ms", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"robustness_checkpoint-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"benchmark": "robustness_checkpoint", "repeat": args.repeat,
                               "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
                               "python": sys.version.split()[0], "torch": torch.__version__, "results": rows},
                              indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
