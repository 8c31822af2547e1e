"""What seeing training costs: the same real run with ``train.report`` and ``train.tensorboard`` on and
off (the baseline), and the cost of one epoch-end refresh of report.html with and without re-plotting the
curves.

The run is the quickstart model (DCGAN, ngf = ndf = 32, 32x32, batch 128) on the first ``--images``
Fashion-MNIST images (Debian's dataset-fashion-mnist).  Runs alternate off/on, ``--repeats`` times each,
and the medians are compared, so a machine shared with other work drifts both sides alike.

    python benchmarks/reporting_overhead.py                  # writes benchmarks/results/reporting_overhead.json
    python benchmarks/reporting_overhead.py --repeats 1      # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import ganforge
from ganforge import config as C

HERE = Path(__file__).resolve().parent


def run_once(runs: Path, images: int, epochs: int, seeing: bool) -> tuple[float, Path]:
    flag = "true" if seeing else "false"
    cfg = C.load(preset="quickstart", overrides=[
        "data.source=fashion-mnist", f"data.limit={images}", "data.num_workers=0", "train.device=cpu",
        f"train.epochs={epochs}", "train.log_every=4", f"train.report={flag}", f"train.tensorboard={flag}"])
    t = time.perf_counter()
    run = ganforge.train(cfg, runs_dir=runs, log_format="quiet")
    return time.perf_counter() - t, run


def time_median(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "reporting_overhead.json")
    args = ap.parse_args()

    from ganforge.reporting.html import plot, write_report
    from ganforge.reporting.rundata import load_run

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        run_once(runs, 256, 1, True)  # warm-up: imports, first matplotlib font cache, allocator
        off, on = [], []
        for _ in range(args.repeats):
            off.append(run_once(runs, args.images, args.epochs, False)[0])
            seconds, run = run_once(runs, args.images, args.epochs, True)
            on.append(seconds)
        data = load_run(run)
        curves = plot(data)
        live = {"status": "running"}
        refresh_cached = time_median(lambda: write_report(run, live=live, curves=curves))
        refresh_plotting = time_median(lambda: write_report(run, live=live))
        report_bytes = (run / "report.html").stat().st_size

    result = {
        "benchmark": "reporting_overhead",
        "setup": f"quickstart DCGAN (ngf=ndf=32, 32x32, batch 128) on {args.images} Fashion-MNIST images, "
                 f"{args.epochs} epochs, CPU",
        "train_seconds_baseline_off": [round(x, 2) for x in off],
        "train_seconds_report_and_tensorboard_on": [round(x, 2) for x in on],
        "ratio_on_over_off": round(statistics.median(on) / statistics.median(off), 3),
        "refresh_seconds_cached_curves": round(refresh_cached, 3),
        "refresh_seconds_replotting_curves": round(refresh_plotting, 3),
        "report_html_bytes": report_bytes,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
                   f"{torch.get_num_threads()} threads",
        "load_average_at_end": os.getloadavg()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"report+tensorboard on / off: {result['ratio_on_over_off']:.3f}x the training time")


if __name__ == "__main__":
    main()
