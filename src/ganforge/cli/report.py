"""ganforge report: write RUN/report.html, the page that shows a run at a glance (also refreshed by training)."""
from __future__ import annotations

import argparse

from ganforge.cli.common import RUN_HELP, add_runs_dir


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write report.html (one self-contained page) into a run directory")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    add_runs_dir(p)
    p.add_argument("--no-media", action="store_true",
                   help="only the page: do not also rewrite curves.png and timeline.gif/.mp4")
    return p


def run(args) -> int:
    from ganforge.reporting.html import finish
    from ganforge.reporting.html import write_report
    from ganforge.runfiles import resolve_run
    from ganforge.storage import RunLock

    run_dir = resolve_run(args.run, args.runs_dir)
    # A writer of the run: refused while training holds it (a training run refreshes its own report.html).
    with RunLock(run_dir, "report", hint=" (while it trains, it refreshes report.html itself: reload the page)"):
        path = finish(run_dir)[-1] if not args.no_media else write_report(run_dir)
    print(f"wrote {path} (open it in a browser: {path.resolve().as_uri()})")
    return 0
