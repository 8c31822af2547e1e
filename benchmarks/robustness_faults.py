"""Fault injection: 50+ SIGKILLs of a real training run at random instants, each followed by a resume.

Each cycle's kill is drawn from four kinds: at a random instant of the run, or aimed at a random instant
inside a checkpoint write, a manifest update or a report refresh (the harness watches for the temporary
file that exists only while that write is under way).  Counts: cycles, aimed kills, kills that landed
inside each window (the killed process's temporary file was left), resumes that worked, state lost (a kill that
lost more than one save interval, or a newest checkpoint that does not load), corrupt checkpoints,
duplicated and missing steps in metrics.jsonl, and whether the resumed run ends bit for bit as an
uninterrupted one (its baseline, run in the same process).  The harness is tests/robustness/fault_harness.py.

    nice python benchmarks/robustness_faults.py --cycles 50
    nice python benchmarks/robustness_faults.py --cycles 10 --modes random    # only random instants
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "robustness"))
sys.path.insert(0, str(ROOT / "tests"))

from fault_harness import MODES, kill_and_resume, same_final_weights, uninterrupted  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cycles", type=int, default=50)
    p.add_argument("--epochs", type=int, default=40, help="of 4 steps each, a checkpoint after every step")
    p.add_argument("--max-delay", type=float, default=3.0, help="seconds: each kill comes at a random instant up to this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                   help="the kinds of kill each cycle draws from (default: all four)")
    args = p.parse_args()
    from conftest import write_images
    from ganforge.data.sources import DEBIAN_FASHION_MNIST, _read_idx

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"  # 64 real Fashion-MNIST images as PNG and JPEG files, tinted to colour
        write_images(images, _read_idx(DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz")[:64], 64)
        run, counts = kill_and_resume(images, Path(tmp) / "killed", args.cycles, args.epochs, args.seed,
                                      args.max_delay, log=lambda m: print(m, flush=True), modes=tuple(args.modes))
        reference = uninterrupted(images, Path(tmp) / "straight", args.epochs)
        counts.exact_at_end = same_final_weights(run, reference)
    result = {"benchmark": "robustness_faults", "args": vars(args), "seconds": round(time.time() - t0, 1),
              **dataclasses.asdict(counts)}
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"robustness_faults-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    ok = counts.state_lost == counts.corrupt_checkpoints == counts.stale_temporaries == 0 and counts.exact_at_end
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
