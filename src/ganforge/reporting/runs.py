"""Listing runs and comparing two of them (``ganforge runs``)."""
from __future__ import annotations

from pathlib import Path

from ganforge import runfiles
from ganforge.config import ConfigError
from ganforge.metrics import overlap
from ganforge.reporting.rundata import RunData, is_run_dir, load_run, numeric_keys, series

LIST_HEADER = ["run", "preset", "dataset", "steps", "best metric", "status", "last checkpoint"]


def find_runs(root: str | Path) -> list[Path]:
    """Run directories directly under ``root`` (or ``root`` itself), oldest first (names start with a timestamp)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give the folder that holds the runs (default: runs)")
    if is_run_dir(root):
        return [root]
    return runfiles.list_runs(root)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _num(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def list_row(run: RunData) -> list[str]:
    best = run.best_metric()
    return [run.name, str(run.cfg("preset", "custom")),
            _short(str(run.summary.get("dataset") or run.cfg("data.source", "?"))), str(run.last_step),
            f"{best[0]} {best[1]:.4g}" if best else "-", run.status, run.last_checkpoint or "-"]


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def list_runs(root: str | Path) -> str:
    runs = [load_run(p) for p in find_runs(root)]
    if not runs:
        return f"no runs under {root}/"
    return format_table(LIST_HEADER, [list_row(r) for r in runs])


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def config_differences(a: RunData, b: RunData) -> list[list[str]]:
    # Plain dicts rather than Config objects: a run written by another ganforge version still compares.
    fa, fb = flatten(a.config), flatten(b.config)
    missing = "(not set)"
    return [[k, str(fa.get(k, missing)), str(fb.get(k, missing))]
            for k in sorted(set(fa) | set(fb)) if fa.get(k, missing) != fb.get(k, missing)]


def metric_rows(a: RunData, b: RunData) -> list[list[str]]:
    def last(run: RunData, key: str):
        values = series(run.records, key)[1]
        return values[-1] if values else None

    def best(run: RunData) -> str:
        found = run.best_metric()
        return f"{found[0]} {found[1]:.4g}" if found else "-"

    rows = [["status", a.status, b.status], ["steps", str(a.last_step), str(b.last_step)],
            ["training seconds", _num(a.summary.get("train_seconds")), _num(b.summary.get("train_seconds"))],
            ["best metric", best(a), best(b)]]
    keys = list(dict.fromkeys(numeric_keys(a.records) + numeric_keys(b.records)))
    shared = {run.name: set(overlap.shared_keys(run.config, keys)) for run in (a, b)}

    def cell(run: RunData, key: str) -> str:
        value = _num(last(run, key))
        return f"{value} ({overlap.SHARED_LABEL})" if key in shared[run.name] and value != "-" else value

    rows += [[f"{k} (last)", cell(a, k), cell(b, k)] for k in keys]
    return rows


def compare(a_dir: str | Path, b_dir: str | Path) -> str:
    a, b = load_run(a_dir), load_run(b_dir)
    header = ["", a.name, b.name]
    diffs = config_differences(a, b)
    parts = ["config differences:",
             format_table(["key", a.name, b.name], diffs) if diffs else "(none: the configs are the same)",
             "", "metrics:", format_table(header, metric_rows(a, b))]
    for run in (a, b):
        uses = overlap.training_imagenet_features(run.config)
        if uses:
            parts.append(f"{run.name}: training used {' and '.join(uses)}, so its ImageNet-feature scores "
                         f"{overlap.SHARED_LABEL} (docs/evaluation.md)")
    return "\n".join(parts)
