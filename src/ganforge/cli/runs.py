"""ganforge runs: the runs in a folder as a table, or two runs side by side (--compare A B)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("runs", help="list runs (preset, dataset, steps, best metric, status), or compare two")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="folder holding the runs (default runs)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="two runs (paths, run names under DIR, or 'latest'): config differences and metrics side by side")
    return p


def run(args) -> int:
    from ganforge.reporting.runs import compare, list_runs
    from ganforge.runfiles import resolve_run

    if args.compare:
        a, b = (resolve_run(x, args.dir) for x in args.compare)
        print(compare(a, b))
    else:
        print(list_runs(args.dir))
    return 0
