"""The main job, measured: what `ganforge train` with no arguments gives a new user, against the tutorial.

The README's first command trains the default recipe on the bundled Fashion-MNIST for 3 minutes
(``MAIN_JOB_MINUTES``).  This benchmark runs exactly that command (``ganforge train`` in a subprocess,
with ``--runs-dir`` and ``--quiet`` and any ``--set`` overrides), then, as the baseline in the same run,
the PyTorch tutorial's DCGAN (preset ``dcgan-celeba64`` at 32x32 grey) for the same minutes, scores both
with FID and KID on EfficientNet-Lite0 against 1,000 Fashion-MNIST training images (latents of seed 123,
as ``benchmarks/quality.py``) and on two scores that owe nothing to ImageNet (SWD, and the Fashion-MNIST
classifier of ``benchmarks/domain_classifier.py``: FD, confidence over the reals'), prints the ratio, writes a grid of each, and appends one JSON line per
run to ``benchmarks/results/main_job.jsonl``.

    python benchmarks/main_job.py                         # the main job and the tutorial, 3 minutes each
    python benchmarks/main_job.py --no-baseline --set model.ndf=32 --name ndf32
    python benchmarks/main_job.py --readme                # also copy the main job's grid to the README picture
    python benchmarks/main_job.py --rescore               # add the independent scores to earlier lines
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import ganforge  # noqa: E402
from ganforge.cli.train import MAIN_JOB_MINUTES  # noqa: E402
from ganforge.runfiles import resolve_run  # noqa: E402
from quality import real_images, score_run, tutorial_config  # noqa: E402
from quality_table import INDEPENDENT  # noqa: E402  (the scores that owe nothing to ImageNet)

README_PICTURE = ROOT.parent / "docs" / "images" / "quickstart_samples.png"


def main_job(runs: Path, overrides: list[str], threads: int) -> Path:
    """``ganforge train`` as the README gives it, in its own process (threads as a user's would be)."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    exe = Path(sys.executable).with_name("ganforge")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "ganforge"]),
           "train", "--runs-dir", str(runs), "--quiet", *overrides]
    subprocess.run(cmd, check=True, env=env)
    return resolve_run("latest", runs)  # the run it just made: the newest under runs


def entry_for(what: str, command: str, overrides: list[str], run: Path, reals: torch.Tensor, grid: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    scores = score_run(run, reals, 1000, grid, dataset="fashion")
    return {"what": what, "command": command, "overrides": overrides, "steps": summary["step"],
            "train_seconds": summary["train_seconds"], "images_seen": summary["images_seen"],
            **{k: round(v, 4) for k, v in scores.items() if k in INDEPENDENT or k.endswith("effnet_lite0")},
            "grid": scores["grid"], "run": str(run), "date": time.strftime("%Y-%m-%d %H:%M")}


def rescore(out: Path, reals: torch.Tensor) -> int:
    """Add the independent scores to the lines of ``out`` that lack them and whose runs are still on disk."""
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    for entry in lines:
        run = Path(entry.get("run", ""))
        if "swd_mean" in entry or not (run / "generator.pt").is_file():
            continue
        scores = score_run(run, reals, 1000, Path(entry["grid"]), dataset="fashion")
        entry.update({k: round(v, 4) for k, v in scores.items() if k in INDEPENDENT})
        print(f"{entry['what']}: " + ", ".join(f"{k} {entry[k]}" for k in INDEPENDENT), flush=True)
    out.write_text("".join(json.dumps(entry) + "\n" for entry in lines))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", nargs="*", default=[], help="overrides (key=value) given to `ganforge train`")
    ap.add_argument("--name", default="main-job", help="what to call the main job's line in the results")
    ap.add_argument("--no-baseline", action="store_true", help="skip the tutorial's run")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of both runs (0: torch's default)")
    ap.add_argument("--readme", action="store_true", help=f"copy the main job's grid to {README_PICTURE.name}")
    ap.add_argument("--machine", default="2-core CPU", help="a note on the machine's state, kept with the results")
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "ganforge" / "bench-main-job")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "main_job.jsonl")
    ap.add_argument("--rescore", action="store_true",
                    help="add SWD and the domain classifier's scores to --out's lines whose runs are on disk, in place")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = args.work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    grids = args.work / "grids"
    grids.mkdir(exist_ok=True)
    reals = real_images(tutorial_config("fashion-mnist", 32, 1, []), limit=1000)
    if args.rescore:
        return rescore(args.out, reals)
    results = []

    run = main_job(runs, args.set, args.threads)
    results.append(entry_for(f"{args.name}: ganforge train (the recipe on Fashion-MNIST, {MAIN_JOB_MINUTES} minutes)",
                             " ".join(["ganforge train", *args.set]), args.set, run, reals, grids / f"{args.name}.png"))
    if args.readme:
        shutil.copyfile(results[-1]["grid"], README_PICTURE)
    if not args.no_baseline:
        minutes = results[0]["train_seconds"] / 60
        cfg = tutorial_config("fashion-mnist", 32, 1, [f"train.max_minutes={MAIN_JOB_MINUTES}", "train.seed=0"])
        tut = ganforge.train(cfg, runs_dir=runs, log_format="quiet")
        results.append(entry_for(f"baseline: the tutorial's DCGAN at 32 px, {MAIN_JOB_MINUTES} minutes",
                                 "preset dcgan-celeba64, data.image_size=32 data.channels=1", [], tut, reals,
                                 grids / "tutorial.png"))
        ratio = results[1]["fid_effnet_lite0"] / results[0]["fid_effnet_lite0"]
        results[0]["fid_ratio_tutorial_over_main_job"] = round(ratio, 2)
        print(f"main job FID-EL0 {results[0]['fid_effnet_lite0']:.1f} ({results[0]['steps']:,} steps in "
              f"{minutes:.1f} min); tutorial {results[1]['fid_effnet_lite0']:.1f} ({results[1]['steps']:,} steps): "
              f"the tutorial's FID is {ratio:.2f}x the main job's")
    for entry in results:
        entry["machine"] = args.machine
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        for entry in results:
            f.write(json.dumps(entry) + "\n")
    for entry in results:
        print(json.dumps(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
