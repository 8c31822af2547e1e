"""Soak: train the default recipe for a long time with mid-run saves, sample grids and evaluation on, and
record the process's RSS, its open file descriptors and the run directory's size over time; they must level
off (the slope of the second half is printed), and checkpoints/ must hold at most train.keep_checkpoints
step checkpoints plus best.pt.

    nice python benchmarks/soak.py --minutes 30            # issue 42's soak (Fashion-MNIST, the recipe)
    nice python benchmarks/soak.py --minutes 3             # shortened
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree(pid: int) -> list[int]:
    """``pid`` and its children (the loader's workers)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            out += tree(int(child))
    return out


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (per minute) of the second half of (seconds, value) points."""
    half = points[len(points) // 2:]
    if len(half) < 2:
        return 0.0
    n = len(half)
    mx = sum(t for t, _ in half) / n
    my = sum(v for _, v in half) / n
    var = sum((t - mx) ** 2 for t, _ in half) or 1.0
    return sum((t - mx) * (v - my) for t, v in half) / var * 60


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--every", type=float, default=10, help="seconds between readings")
    args = p.parse_args()
    keep = 3
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        cmd = [sys.executable, "-m", "ganforge", "train", "--quiet", "--runs-dir", str(runs), "--midsave", "1m",
               f"train.max_minutes={args.minutes}", "train.sample_every=200", "eval.every=1000", "eval.n=500",
               f"train.keep_checkpoints={keep}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t0, readings, most_checkpoints = time.time(), [], 0
        while proc.poll() is None:
            time.sleep(args.every)
            try:
                pids = tree(proc.pid)
                rss = sum(rss_mb(q) for q in pids)
                fds = sum(len(os.listdir(f"/proc/{q}/fd")) for q in pids)
            except (FileNotFoundError, ProcessLookupError):
                break
            if rss == 0:  # the process is exiting: not a reading
                break
            run = next(iter(runs.glob("*")), None)
            size = du_mb(run) if run else 0.0
            steps = len(list((run / "checkpoints").glob("step_*.pt"))) if run and (run / "checkpoints").exists() else 0
            most_checkpoints = max(most_checkpoints, steps)
            readings.append({"s": round(time.time() - t0, 1), "rss_mb": round(rss, 1), "fds": fds,
                             "run_mb": round(size, 2), "step_checkpoints": steps})
            print(json.dumps(readings[-1]), flush=True)
        err = proc.stderr.read()
    result = {"benchmark": "soak", "minutes": args.minutes, "exit": proc.returncode,
              "rss_slope_mb_per_min": round(slope([(r["s"], r["rss_mb"]) for r in readings]), 2),
              "fds_slope_per_min": round(slope([(r["s"], r["fds"]) for r in readings]), 2),
              "run_mb_slope_per_min": round(slope([(r["s"], r["run_mb"]) for r in readings]), 2),
              "most_step_checkpoints": most_checkpoints, "keep_checkpoints": keep,
              "error": err.strip().splitlines()[-1] if proc.returncode else None, "readings": readings}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print({k: v for k, v in result.items() if k != "readings"})
    print(f"wrote {out}")
    return 0 if most_checkpoints <= keep and proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
