"""ganforge report: write RUN/report.html, the page that shows a run at a glance (also refreshed by training)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="write report.html (one self-contained page) into a run directory")
    p.add_argument("run", metavar="RUN", help="run directory (a path, a name under --runs-dir, or 'latest')")
    p.add_argument("--runs-dir", default="runs", help="where 'latest' looks (default runs)")
    p.add_argument("--no-media", action="store_true",
                   help="only the page: do not also rewrite curves.png and timeline.gif/.mp4")
    return p


def run(args) -> int:
    from ganforge.reporting.curves import write_curves
    from ganforge.reporting.html import write_report
    from ganforge.reporting.rundata import load_run
    from ganforge.reporting.timeline import write_timeline
    from ganforge.reporting.runs import resolve

    run_dir = resolve(args.run, args.runs_dir)
    data = load_run(run_dir)
    if not args.no_media:
        write_curves(data.records, run_dir / "curves.png")
        write_timeline(run_dir, data.sample_grids())
    path = write_report(run_dir)
    print(f"wrote {path} (open it in a browser: {path.resolve().as_uri()})")
    return 0
