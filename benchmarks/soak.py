"""Soak: train the default recipe for a long time with mid-run saves, sample grids and evaluation on, and
record the process's RSS, its open file descriptors and the run directory's size over time; they must level
off (the slope of the second half is printed, and whether it stays under a leak's), and checkpoints/ must
hold at most train.keep_checkpoints step checkpoints plus best.pt (and no temporary files left behind).

The run is ``ganforge train`` with no data and no preset (the default recipe on the bundled Fashion-MNIST,
as a new user's first run), with ``--midsave 1m``, ``train.sample_every=200``, ``eval.every=1000``
(``eval.n=500``), ``train.keep_checkpoints=3`` and ``train.max_minutes=MINUTES``; it trains this checkout's
ganforge (``src/``).  Readings every ``--every`` seconds include the loader's worker processes.

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
SRC = Path(__file__).resolve().parent.parent / "src"
#: What counts as levelled off: over the second half, RSS grows by less than this share of its median per
#: minute, and the open file descriptors by less than one every ten minutes.
RSS_LEAK_SHARE_PER_MIN = 0.01
FDS_LEAK_PER_MIN = 0.1


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
    total = 0
    for p in path.rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except FileNotFoundError:  # a temporary file renamed into place meanwhile
            pass
    return total / 2**20


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
               # The time budget alone ends the run: the recipe's planned epochs would end it sooner.
               f"train.max_minutes={args.minutes}", "train.epochs=100000", "train.sample_every=200",
               "eval.every=1000", "eval.n=500",
               f"train.keep_checkpoints={keep}"]
        env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log = open(Path(tmp) / "stderr.txt", "w+")  # a file, not a pipe nobody reads for half an hour
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, env=env)
        t0, readings, most_checkpoints, most_best, leftovers = time.time(), [], 0, 0, set()
        while proc.poll() is None:
            time.sleep(args.every)
            try:
                pids = tree(proc.pid)
                rss = sum(rss_mb(q) for q in pids)
                fds = sum(len(os.listdir(f"/proc/{q}/fd")) for q in pids)
            except (FileNotFoundError, ProcessLookupError):  # a worker (or the process) ended while read
                continue
            if rss == 0:  # the process is exiting: not a reading
                continue
            run = next(iter(runs.glob("*")), None)
            size = du_mb(run) if run else 0.0
            folder = run / "checkpoints" if run else None
            names = [q.name for q in folder.iterdir()] if folder and folder.is_dir() else []
            steps = sum(n.startswith("step_") and n.endswith(".pt") for n in names)
            # A save writes the new checkpoint and its manifest before it deletes the oldest (a kill between
            # them must leave a listed, whole file), so keep + 1 exist for milliseconds: a count is held
            # against the limit when two readings in a row see it, as a left-behind file would be.
            most_checkpoints = max(most_checkpoints, min(steps, readings[-1]["step_checkpoints"]) if readings else steps)
            most_best = max(most_best, sum(n == "best.pt" for n in names))
            # A temporary twin seen twice in a row is not a write under way: it was left behind.
            temporaries = {n for n in names if ".tmp-" in n}
            leftovers |= temporaries & set(readings[-1]["temporaries"]) if readings else set()
            readings.append({"s": round(time.time() - t0, 1), "rss_mb": round(rss, 1), "fds": fds,
                             "run_mb": round(size, 2), "step_checkpoints": steps, "temporaries": sorted(temporaries)})
            print(json.dumps(readings[-1]), flush=True)
        proc.wait()  # its exit status, and nothing left running when the folder goes
        log.seek(0)
        err = log.read()
        log.close()
    rss_slope = slope([(r["s"], r["rss_mb"]) for r in readings])
    fds_slope = slope([(r["s"], r["fds"]) for r in readings])
    median_rss = sorted(r["rss_mb"] for r in readings)[len(readings) // 2] if readings else 0.0
    result = {"benchmark": "soak", "minutes": args.minutes, "exit": proc.returncode,
              "rss_slope_mb_per_min": round(rss_slope, 2), "median_rss_mb": median_rss,
              "rss_levels_off": rss_slope < RSS_LEAK_SHARE_PER_MIN * median_rss,
              "fds_slope_per_min": round(fds_slope, 2), "fds_level_off": fds_slope < FDS_LEAK_PER_MIN,
              "run_mb_slope_per_min": round(slope([(r["s"], r["run_mb"]) for r in readings]), 2),
              "most_step_checkpoints": most_checkpoints, "keep_checkpoints": keep, "most_best": most_best,
              "temporaries_left_behind": sorted(leftovers),
              "error": err.strip().splitlines()[-1] if proc.returncode else None, "readings": readings}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print({k: v for k, v in result.items() if k != "readings"})
    print(f"wrote {out}")
    ok = (most_checkpoints <= keep and most_best <= 1 and not leftovers and proc.returncode == 0
          and result["rss_levels_off"] and result["fds_level_off"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
