"""The summary table at the top of docs/quality.md, worked out from the page's table of every run.

docs/quality.md keeps one row per measured run (section "Every emoji run", a row per batch, system, seed
and point) and, at the top, one row per system and point: how many runs, their steps, and the mean of
each score with its range.  This works the summary out from the per-run rows, so the two never
disagree, and prints it or (``--write``) puts it in place of the page's summary table:

    python benchmarks/quality_table.py docs/quality.md --write

Rows whose system is not in ``SYSTEMS`` (a candidate measured once) are left out of the summary; they stay
in the per-run table and in their own sections.
"""
from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

#: The systems in the summary, in the order shown, named as the per-run table names them; the default's
#: rows are shown in bold.
SYSTEMS = ("default (auto-v7)", "default (auto-v7), alone, 2 threads", "auto-v6", "auto-v5", "auto-v4",
           "auto-v4, Lite1 folded", "auto-v3", "first recipe (auto-v1)",
           "first recipe (auto-v1), four runs on the 2 cores", "tutorial (dcgan-celeba64 at 64 px)",
           "lightweight-gan 1.2.1")
DEFAULT = SYSTEMS[0]
ROW = re.compile(r"^\| ([A-Z]+) \| (.+?) \| (\d+) \| (\d+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$")
SCORES = ("FID-EL0", "KID-EL0", "FID-EL2", "KID-EL2")
#: The heading of the section whose table holds every run.
SECTION = "## Every emoji run"
#: The summary table's header row, by which ``--write`` finds the table to replace.
HEADER = "| system | minutes | runs (seeds) | steps | FID-EL0 | KID-EL0 | FID-EL2 | KID-EL2 |"


def runs(page: str) -> list[dict]:
    """Every row of the per-run table in the page's ``SECTION`` (bold marks dropped)."""
    if SECTION not in page:
        raise SystemExit(f"the page has no section '{SECTION}', whose table holds every run")
    section = page.split(SECTION, 1)[1].split("\n## ", 1)[0]
    out = []
    for line in section.splitlines():
        found = ROW.match(line.replace("**", ""))
        if found:
            batch, system, seed, minutes, steps, *scores = found.groups()
            out.append({"batch": batch, "system": system, "seed": int(seed), "minutes": int(minutes),
                        "steps": int(steps.replace(",", "")), **dict(zip(SCORES, map(float, scores)))})
    return out


def spread(values: list[float], digits: int) -> str:
    """The mean, and the range when there is more than one value."""
    mean = f"{statistics.mean(values):.{digits}f}"
    if len(values) == 1:
        return mean
    return f"{mean} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def summary(rows: list[dict]) -> str:
    lines = [HEADER, "|---|---|---|---|---|---|---|---|"]
    for system in SYSTEMS:
        shown = f"**{system}**" if system == DEFAULT else system
        mine = [r for r in rows if r["system"] == system]
        for minutes in sorted({r["minutes"] for r in mine}):
            at = [r for r in mine if r["minutes"] == minutes]
            steps = [r["steps"] for r in at]
            seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in at}))
            cells = [spread([r[s] for r in at], 1 if s.startswith("FID") else 3) for s in SCORES]
            step_range = f"{min(steps):,}" if min(steps) == max(steps) else f"{min(steps):,}-{max(steps):,}"
            lines.append(f"| {shown} | {minutes} | {len(at)} ({seeds}) | {step_range} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_summary(page: str, table: str) -> str:
    """``page`` with its summary table (the one under ``HEADER``) replaced by ``table``."""
    lines = page.split("\n")
    if HEADER not in lines:
        raise SystemExit(f"the page has no summary table to replace (a table headed '{HEADER}')")
    start = lines.index(HEADER)
    end = start
    while end + 1 < len(lines) and lines[end + 1].startswith("|"):
        end += 1
    return "\n".join(lines[:start] + table.split("\n") + lines[end + 1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", type=Path, nargs="?", default=Path(__file__).resolve().parents[1] / "docs" / "quality.md")
    ap.add_argument("--write", action="store_true", help="replace the page's summary table instead of printing it")
    args = ap.parse_args()
    page = args.page.read_text()
    rows = runs(page)
    if not rows:
        raise SystemExit(f"{args.page} has no per-run rows (| batch | system | seed | minutes | steps | scores ... |)")
    table = summary(rows)
    if args.write:
        args.page.write_text(replace_summary(page, table))
        print(f"wrote the summary of {len(rows)} rows into {args.page}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
