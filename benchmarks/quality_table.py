"""The quality results in one file per dataset, and what docs/quality.md shows of them: the summary tables
and the curve plot.

``benchmarks/quality.py`` writes one ``results/quality-curve-<tag>-<time>.json`` per invocation.  Their runs
are folded into ``results/quality-<dataset>.json`` (one list of runs per dataset: system, seed, threads,
overrides, and the scores at each point), and the raw files can then go:

    python benchmarks/quality_table.py --add benchmarks/results/quality-curve-*.json   # fold new runs in
    python benchmarks/quality_table.py                      # print each dataset's summary table
    python benchmarks/quality_table.py --write docs/quality.md   # put the tables in place on the page
    python benchmarks/quality_table.py --plot docs/images   # quality_curve_<dataset>.png: FID against minutes

A run's system is the recipe's name (``auto-v7``; ``default`` is named by the version its notes give) with
its ``--set`` overrides after a ``+``: a run with overrides is a candidate, kept in the file but not in the
summary.  ``--as NAME`` names the runs being added (a candidate that equals a later recipe), ``--shared``
notes that they shared the machine with more than a pair.  The summary has one row per system, machine
share and point: the runs, their seeds and steps, and each score's mean with its range: FID and KID on two ImageNet
networks, then the independent scores (SWD, and the domain classifier's FD, confidence, spread and confidence over
the reals', ``benchmarks/domain_classifier.py``), with the real images' own figures as the last row.  A file folded
in before has its scores taken again (after ``quality.py --rescore`` added some).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: The systems in the summary, in the order shown (any other plain name follows them).
ORDER = ("auto-v7", "auto-v6", "auto-v5", "auto-v4", "auto-v3", "auto-v2", "auto-v1", "tutorial",
         "lightweight-gan")
#: The recipe the summary marks as today's default.
DEFAULT = "auto-v7"
SCORES = ("fid_effnet_lite0", "kid_effnet_lite0", "fid_effnet_lite2", "kid_effnet_lite2", "swd_mean", "domain_fd",
          "domain_confidence", "domain_spread", "domain_confidence_ratio")
HEADS = {"fid_effnet_lite0": "FID-EL0", "kid_effnet_lite0": "KID-EL0", "fid_effnet_lite2": "FID-EL2",
         "kid_effnet_lite2": "KID-EL2", "swd_mean": "SWD", "domain_fd": "domain FD",
         "domain_confidence": "confidence", "domain_spread": "spread", "domain_confidence_ratio": "conf. / real"}
#: Decimals shown of each score.
DIGITS = {"fid_effnet_lite0": 1, "fid_effnet_lite2": 1, "swd_mean": 1, "domain_fd": 2, "domain_spread": 2}
#: The reals' figures on the domain classifier (quality.py's dataset block ``domain``), shown as a row of their own.
REAL_DOMAIN = {"domain_fd": "real_domain_fd_half_vs_half", "domain_confidence": "real_domain_confidence",
               "domain_spread": "real_domain_spread"}
#: The independent scores: shown only where a point records the reals they were scored against (quality.py's
#: ``independent_reference``); before that they compared with the first 1,000 files in name order.
#: Of them, the domain classifier's: shown only where a point's judge (its weights' digest) is the one the
#: dataset's real figures were scored with.
DOMAIN = ("domain_fd", "domain_confidence", "domain_spread", "domain_confidence_ratio")
INDEPENDENT = ("swd_mean", *DOMAIN)
KEEP = ("minutes", "step", *SCORES, "copy_ratio_effnet_lite0", "independent_reference", "samples", "judge")
#: The marker line on the page after which ``--write`` puts a dataset's table.
MARKER = "<!-- benchmarks/quality_table.py {dataset} -->"


def dataset_file(dataset: str) -> Path:
    return RESULTS / f"quality-{dataset}.json"


def load(dataset: str) -> dict:
    path = dataset_file(dataset)
    if not path.exists():
        return {"dataset": dataset, "runs": []}
    return json.loads(path.read_text())


def system_name(entry: dict) -> str:
    """A quality.py entry's system: the recipe's version for ``default``, with its overrides after ``+``."""
    name = entry["system"]
    found = re.search(r"\((auto-v\d+)\)", (entry.get("notes") or [""])[0])
    if name == "default" and found:
        name = found.group(1)
    overrides = entry.get("overrides") or []
    return name + (" + " + " ".join(overrides) if overrides else "")


def add(paths: list[Path], name: str | None, shared: str | None) -> None:
    """Fold quality.py's curve files into the per-dataset files (a file already folded in is skipped)."""
    by_dataset: dict[str, dict] = {}
    for path in paths:
        raw = json.loads(path.read_text())
        for dataset, block in raw["datasets"].items():
            data = by_dataset.setdefault(dataset, load(dataset))
            judge = judge_of(block.get("domain"))
            if "domain" in block:
                if "real_domain" not in data or judge == judge_of(data["real_domain"]):
                    data["real_domain"] = block["domain"]
                else:  # another classifier's figures would not compare with the points already there
                    print(f"{path.name}: scored by the domain classifier {judge}, the page's reals by "
                          f"{judge_of(data['real_domain'])}: its domain scores are kept but not shown")
            folded = [r for r in data["runs"] if r["from"] == path.name]
            if folded:
                # Folded in before: its points' scores are taken again, with any added since (quality.py --rescore).
                entries = [e for e in block.get("systems", []) if e["points"]]
                for run, entry in zip(folded, entries):
                    for kept, point in zip(run["points"], entry["points"]):
                        if kept["minutes"] == point["minutes"]:
                            kept.update({k: point[k] for k in KEEP if k in point})
                print(f"{path.name}: already in {dataset_file(dataset).name}: its scores refreshed")
                continue
            for entry in block["systems"] if raw.get("mode") == "curve" else map(_as_curve(raw), block["runs"]):
                if not entry["points"]:
                    print(f"{path.name}: {entry['system']} {entry['status']}: no points, left out")
                    continue
                data["runs"].append({
                    "system": name or system_name(entry), "seed": entry.get("seed", raw.get("seed", 0)),
                    "threads": raw["machine"]["threads"], "device": raw["machine"]["device"],
                    "shared": shared, "from": path.name,
                    "points": [{**{k: p[k] for k in KEEP if k in p}, **({"judge": judge} if judge else {})}
                               for p in entry["points"]]})
    for dataset, data in by_dataset.items():
        dataset_file(dataset).write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {dataset_file(dataset)} ({len(data['runs'])} runs)")


def _as_curve(raw: dict):
    """A run of quality.py's plain mode (one score at the end) as a curve entry with one point."""
    def entry(run: dict) -> dict:
        point = {"minutes": raw["minutes"], "step": run.get("steps"), **run}
        return {"system": run["preset"] if run["preset"] != "auto" else "default", "notes": run.get("notes"),
                "overrides": [], "seed": run.get("seed", 0), "status": run["status"],
                "points": [point] if "steps" in run and "fid_effnet_lite0" in run else []}
    return entry


def row_label(run: dict) -> str:
    label = run["system"]
    if run["threads"] > 1:
        label += f", alone, {run['threads']} threads"
    if run.get("shared"):
        label += f", {run['shared']}"
    return label


def summary_rows(data: dict) -> dict[str, list[dict]]:
    """The runs of plain systems (no overrides), by row label, in ``ORDER``."""
    rows: dict[str, list[dict]] = {}
    plain = [r for r in data["runs"] if " + " not in r["system"]]
    rank = {s: i for i, s in enumerate(ORDER)}
    for run in sorted(plain, key=lambda r: (rank.get(r["system"], len(ORDER)), r["threads"], bool(r.get("shared")))):
        rows.setdefault(row_label(run), []).append(run)
    return rows


def spread(values: list[float], digits: int) -> str:
    """The mean, and the range when there is more than one value."""
    mean = f"{statistics.mean(values):.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ({min(values):.{digits}f}-{max(values):.{digits}f})"


#: The tables show the baselines, earlier recipes and the default's runs under other conditions from this
#: point on (their early points are in the plot), so that the page stays a page.
BASELINE_FROM_MINUTES = 12


def judge_of(reference: dict | None) -> str | None:
    """The weights' digest of the domain classifier a reference (the reals' figures) was scored with; None for
    the weights before digests were recorded."""
    return ((reference or {}).get("classifier") or {}).get("weights_digest")


def shown_score(point: dict, score: str, judge: str | None = None) -> bool:
    """Whether a point's ``score`` is shown: independent scores only against the evaluation subset, and the
    domain classifier's only from ``judge``, the one the page's real figures come from."""
    return (score in point and (score not in INDEPENDENT or "independent_reference" in point)
            and (score not in DOMAIN or point.get("judge") == judge))


def summary(data: dict) -> str:
    scores = [s for s in SCORES if any(s in p for r in data["runs"] for p in r["points"])]
    lines = ["| system | minutes | runs (seeds) | steps | " + " | ".join(HEADS[s] for s in scores) + " |",
             "|---" * (4 + len(scores)) + "|"]
    judge = judge_of(data.get("real_domain"))
    for label, runs in summary_rows(data).items():
        shown = f"**{label}**" if runs[0]["system"] == DEFAULT else label
        main_rows = runs[0]["system"] == DEFAULT and runs[0]["threads"] == 1 and not runs[0].get("shared")
        for minutes in sorted({p["minutes"] for r in runs for p in r["points"]}):
            if not main_rows and minutes < BASELINE_FROM_MINUTES:
                continue
            at = [(r, p) for r in runs for p in r["points"] if p["minutes"] == minutes]
            steps = [p["step"] for _, p in at]
            seeds = ", ".join(str(s) for s in sorted({r["seed"] for r, _ in at}))
            cells = [spread(values, DIGITS.get(s, 3)) if (values := [p[s] for _, p in at if shown_score(p, s, judge)])
                     else "" for s in scores]
            step_range = f"{min(steps):,}" if min(steps) == max(steps) else f"{min(steps):,}-{max(steps):,}"
            lines.append(f"| {shown} | {minutes:g} | {len(at)} ({seeds}) | {step_range} | " + " | ".join(cells) + " |")
    real = data.get("real_domain")
    if real and any(s in REAL_DOMAIN for s in scores):
        cells = [f"{real[REAL_DOMAIN[s]]:.{DIGITS.get(s, 3)}f}" if s in REAL_DOMAIN else
                 ("1.000" if s == "domain_confidence_ratio" else "") for s in scores]
        lines.append("| real images (domain FD: half against half) | | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(page: Path, tables: dict[str, str]) -> None:
    """Put each dataset's table in place of the table after its marker line on ``page``."""
    lines = page.read_text().split("\n")
    for dataset, table in tables.items():
        marker = MARKER.format(dataset=dataset)
        if marker not in lines:
            print(f"{page} has no line '{marker}': its table is left out")
            continue
        start = lines.index(marker) + 1
        end = start
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        lines[start:end] = table.split("\n")
    page.write_text("\n".join(lines))
    print(f"wrote the tables of {', '.join(tables)} into {page}")


def plot(data: dict, out_dir: Path) -> Path | None:
    """FID against training minutes on both feature networks: a line per system (the mean of its runs at
    one thread each, two side by side), a dot per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {label: runs for label, runs in summary_rows(data).items()
            if runs[0]["threads"] == 1 and not runs[0].get("shared") and any(len(r["points"]) > 1 for r in runs)}
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    every_minute = sorted({p["minutes"] for runs in rows.values() for r in runs for p in r["points"]})
    for ax, key in zip(axes, ("fid_effnet_lite0", "fid_effnet_lite2")):
        for label, runs in rows.items():
            minutes = sorted({p["minutes"] for r in runs for p in r["points"]})
            mean = [statistics.mean(p[key] for r in runs for p in r["points"] if p["minutes"] == m) for m in minutes]
            line, = ax.plot(minutes, mean, marker="o", lw=2.5 if label == DEFAULT else 1.5,
                            label=f"{label} ({len(runs)} run{'s' * (len(runs) > 1)})")
            if len(runs) > 1:
                ax.scatter([p["minutes"] for r in runs for p in r["points"]],
                           [p[key] for r in runs for p in r["points"]], color=line.get_color(), s=8, alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_xticks(every_minute, [f"{m:g}" for m in every_minute])
        ax.set_xlabel("training minutes (2-core CPU, one thread a run)")
        ax.set_ylabel(f"{HEADS[key]}, lower is better")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{data['dataset']}: FID against training time")
    fig.tight_layout()
    out = out_dir / f"quality_curve_{data['dataset']}.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--add", type=Path, nargs="+", metavar="CURVE_JSON", help="fold quality.py curve files in")
    ap.add_argument("--as", dest="name", help="with --add: the system's name (default: quality.py's)")
    ap.add_argument("--shared", help="with --add: how the runs shared the machine (shown in the summary)")
    ap.add_argument("--write", type=Path, metavar="PAGE", help="put the tables on PAGE (after its marker lines)")
    ap.add_argument("--plot", type=Path, metavar="DIR", help="write DIR/quality_curve_<dataset>.png")
    args = ap.parse_args()
    if args.add:
        add(args.add, args.name, args.shared)
        return 0
    datasets = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("quality-*.json"))
                if re.fullmatch(r"quality-[a-z0-9_]+\.json", p.name)]
    if not datasets:
        raise SystemExit(f"no results/quality-<dataset>.json in {RESULTS}: fold curve files in with --add")
    tables = {d["dataset"]: summary(d) for d in datasets}
    if args.write:
        write(args.write, tables)
    if args.plot:
        for d in datasets:
            out = plot(d, args.plot)
            if out:
                print(f"wrote {out}")
    if not args.write and not args.plot:
        for dataset, table in tables.items():
            print(f"\n{dataset}\n\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
