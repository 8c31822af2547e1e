"""``report.html``: one self-contained page that shows, at a glance, whether a run is working.

Self-contained means the page makes no network request: styles and the slider's script are inline and
every image is a ``data:`` URI, so the file can be mailed, archived or opened from the file system in
any browser.  The page is rendered with Jinja2 (autoescaping on: config values and file names are text,
never markup) from ``report.html`` next to this module.
"""
from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ganforge.classes import row_labels
from ganforge.reporting.curves import render_curves
from ganforge.metrics import overlap
from ganforge.reporting.rundata import RunData, load_run, numeric_keys, per_epoch
from ganforge.reporting.scores import add_independent_scores, score_rows
from ganforge.reporting.timeline import write_timeline
from ganforge.runfiles import RunDir
from ganforge.storage import atomic_write_bytes, atomic_write_text

#: Beyond this many sample grids the slider shows an even selection (always with the first and last),
#: so a 500-epoch run still gives a page a browser opens quickly.
MAX_GRIDS = 100
#: Lines of data_errors.txt listed on the page (the file itself has them all).
MAX_ERRORS = 20

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                          autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(png).decode('ascii')}"


def file_uri(path: Path | None) -> str | None:
    return data_uri(path.read_bytes()) if path is not None and path.is_file() else None


def evenly(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    idx = sorted({round(i * (len(items) - 1) / (limit - 1)) for i in range(limit)})
    return [items[i] for i in idx]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return str(datetime.timedelta(seconds=round(seconds)))


def _scale(run: RunData) -> str:
    """The processes that train the run and the effective batch (from its facts): ``2 x 16 = 32``."""
    batch = run.cfg("data.batch_size")
    if not isinstance(batch, int):
        return "-"
    world = run.facts.world_size
    return f"{world} x {batch} = {run.facts.effective_batch_size or world * batch}"


@dataclass
class Curves:
    """The curves PNG (None before anything is logged) and the last step it shows."""
    png: bytes | None
    step: int


def plot(run: RunData) -> Curves:
    return Curves(render_curves(run.records), int(run.records[-1]["step"]) if run.records else 0)


def metrics_table(run: RunData) -> tuple[list[str], list[list[str]]]:
    keys = numeric_keys(run.records)
    header = ["epoch", "step"] + keys
    rows = [[_fmt(r.get("epoch")), _fmt(r.get("step"))] + [_fmt(r.get(k)) for k in keys] for r in per_epoch(run.records)]
    return header, rows


def render(run: RunData, live: dict | None = None, curves: Curves | None = None) -> str:
    """The page for ``run``; ``live`` overrides the summary while training is still going, ``curves``
    passes curves already plotted (they are plotted from ``run`` otherwise)."""
    summary = dict(run.summary)
    summary.update(live or {})
    grids = evenly(run.sample_grids(), MAX_GRIDS)
    header, rows = metrics_table(run)
    if curves is None:
        curves = plot(run)
    speeds = [r["images_per_s"] for r in run.records if isinstance(r.get("images_per_s"), (int, float))]
    best_metric = run.best_metric()
    return _ENV.get_template("report.html").render(
        scores=score_rows(run), shared_with=overlap.training_imagenet_features(run.config),
        shared_label=overlap.SHARED_LABEL,
        run=run.name,
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        status=summary.get("status", run.status),
        preset=run.cfg("preset", "custom"),
        model=run.cfg("model.name", "?"),
        image_size=run.cfg("data.image_size", "?"),
        channels=run.cfg("data.channels", "?"),
        config_text=run.config_text,
        dataset=dict(source=summary.get("dataset", run.cfg("data.source", "?")),
                     images=summary.get("images"), skipped=summary.get("skipped_images", len(run.data_errors)),
                     errors=run.data_errors[:MAX_ERRORS], more_errors=max(0, len(run.data_errors) - MAX_ERRORS),
                     real=file_uri(run.real_samples)),
        grids=[dict(label=g.label, src=file_uri(g.path)) for g in grids],
        row_labels=row_labels(run.config, run.facts.class_names),
        grids_skipped=len(run.sample_grids()) - len(grids),
        curves=data_uri(curves.png) if curves.png else None,
        curves_step=curves.step, last_step=int(summary.get("step", run.last_step)),
        table_header=header, table_rows=rows,
        diagnostics=run.diagnostics,
        best=run.best_checkpoint, best_metric=best_metric, last_checkpoint=run.last_checkpoint,
        timing=[("steps", _fmt(summary.get("step", run.last_step))),
                ("epochs", _fmt(summary.get("epoch", run.records[-1].get("epoch") if run.records else None))),
                ("images seen", _fmt(summary.get("images_seen"))),
                ("training time", _duration(summary.get("train_seconds"))),
                ("mean images / s", f"{sum(speeds) / len(speeds):.1f}" if speeds else "-"),
                ("processes x batch", _scale(run)),
                ("device", _fmt(summary.get("device"))),
                ("hardware", _fmt(summary.get("hardware"))),
                ("python / torch", f"{summary.get('python', '?')} / {summary.get('torch', '?')}")],
    )


def write_report(run_dir: str | Path, live: dict | None = None, curves: Curves | None = None) -> Path:
    """Write ``RUN/report.html`` (atomically: a browser refreshing mid-write never sees half a page)."""
    run = load_run(run_dir)
    path = RunDir(run.path).report
    atomic_write_text(path, render(run, live, curves))
    return path


def finish(run_dir: str | Path) -> list[Path]:
    """The end-of-run artefacts: an independent score where training used ImageNet features and the run has
    none (:func:`~ganforge.reporting.scores.add_independent_scores`), curves.png, the timeline, report.html
    (``ganforge report`` runs this, and the report's callback at the end of training)."""
    written = add_independent_scores(load_run(run_dir))
    run = load_run(run_dir)
    curves = plot(run)
    if curves.png:
        atomic_write_bytes(RunDir(run.path).curves, curves.png)
        written.append(RunDir(run.path).curves)
    written += write_timeline(run.path, run.sample_grids())
    written.append(write_report(run.path, curves=curves))
    return written
