"""Reading what a run directory holds, for the report, the curves, the timeline and ``ganforge runs``.

Everything here tolerates a run that is still going (no ``summary.json`` yet) or was killed (a half-written
last line of ``metrics.jsonl``): a report of a broken run is exactly when one is needed.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ganforge import runfiles
from ganforge.config import ConfigError
from ganforge.reporting.grids import Grid, sample_grids

#: Keys of a metrics record that locate it rather than measure something.
POSITION_KEYS = ("step", "epoch")

_EPOCH_GRID = re.compile(r"epoch_(\d+)\.png$")
_STEP_GRID = re.compile(r"step_(\d+)\.png$")


def metric_group(key: str) -> str:
    """The panel/tag group a logged metric belongs to; one place so TensorBoard and the curves agree."""
    if key.startswith("loss_"):
        return "loss"
    if key in ("d_x", "d_g_z", "d_g_z2"):
        return "D"
    if key.startswith("lr_"):
        return "lr"
    if "grad" in key:
        return "grad"
    if key == "images_per_s":
        return "speed"
    return "metrics"


def read_metrics(path: Path) -> list[dict]:
    """The records of ``metrics.jsonl``; a line cut short by a kill is skipped."""
    records = []
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def numeric_keys(records: list[dict]) -> list[str]:
    """Every measured key (numbers only), in first-seen order."""
    keys: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k not in POSITION_KEYS and _is_number(v):
                keys.setdefault(k)
    return list(keys)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one key, from the records that have it."""
    steps, values = [], []
    for r in records:
        v = r.get(key)
        if _is_number(v):
            steps.append(int(r["step"]))
            values.append(float(v))
    return steps, values


def per_epoch(records: list[dict]) -> list[dict]:
    """One row per epoch: the latest value of every key logged during it (evaluations included)."""
    rows: dict[int, dict] = {}
    for r in records:
        rows.setdefault(int(r.get("epoch", 0)), {}).update(r)
    return [rows[e] for e in sorted(rows)]


@dataclass
class RunData:
    """A run directory, read once."""

    path: Path
    config: dict  # config.yaml's mapping, without the keys earlier versions wrote into it (now in facts)
    config_text: str
    summary: dict
    records: list[dict]
    manifest: dict
    epoch_grids: list[Grid] = field(default_factory=list)
    step_grids: list[Grid] = field(default_factory=list)
    data_errors: list[str] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)  # diagnostics.jsonl: findings in plain words
    facts: runfiles.RunFacts = field(default_factory=runfiles.RunFacts)  # run.json: class names, processes, ...

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def real_samples(self) -> Path | None:
        p = self.path / runfiles.RunDir.REAL_SAMPLES
        return p if p.is_file() else None

    def cfg(self, dotted: str, default=None):
        node = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def last_step(self) -> int:
        if "step" in self.summary:
            return int(self.summary["step"])
        return int(self.records[-1]["step"]) if self.records else 0

    @property
    def status(self) -> str:
        # No summary yet: the run is still training, or was stopped before it could write one.
        return str(self.summary.get("status", "running or stopped"))

    @property
    def last_checkpoint(self) -> str | None:
        if self.summary.get("last_checkpoint"):
            return str(self.summary["last_checkpoint"])
        entries = self.manifest.get("checkpoints") or []
        return f"checkpoints/{entries[-1]['file']}" if entries else None

    @property
    def best_checkpoint(self) -> dict | None:
        return self.manifest.get("best") or None

    def best_metric(self) -> tuple[str, float] | None:
        """(key, value) of the metric that picks the best checkpoint (``eval.best``), at its best so far.

        A finished run's summary.json says it; during training it comes from the evaluation lines of
        metrics.jsonl, read with the evaluation's own rule for the key and for which way is better.
        """
        if self.summary.get("best_metric") and _is_number(self.summary.get("best_value")):
            return str(self.summary["best_metric"]), float(self.summary["best_value"])
        key, higher_is_better = self._best_rule()
        _, values = series(self.records, key)
        if values:
            return key, max(values) if higher_is_better else min(values)
        best = self.best_checkpoint
        if best and _is_number(best.get("metric")):
            return key, float(best["metric"])
        return None

    def _best_rule(self) -> tuple[str, bool]:
        from ganforge.metrics.evaluate import best_key

        best, features = str(self.cfg("eval.best", "fid")), str(self.cfg("eval.features", "effnet-lite0"))
        try:
            return best_key(best, features)
        except ConfigError:  # a run from a version with other metric names: show the name as it is
            return best, False

    def sample_grids(self) -> list[Grid]:
        """What the report's slider steps through: every grid in the order it was written (epoch grids and
        ``train.sample_every`` grids, from ``samples/grids.jsonl``); for runs without that index, the epoch
        grids, or the step grids when there are none."""
        return sample_grids(runfiles.RunDir(self.path).samples)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _grids(folder: Path, pattern: re.Pattern, word: str) -> list[Grid]:
    found = []
    for p in folder.glob("*.png") if folder.is_dir() else []:
        m = pattern.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [Grid(f"{word} {n}", p) for n, p in sorted(found)]


def is_run_dir(path: Path) -> bool:
    return runfiles.is_run_dir(path)


def load_run(path: str | Path) -> RunData:
    path = Path(path)
    run = runfiles.RunDir(path)
    if not is_run_dir(path):
        raise ConfigError(f"{path} is not a ganforge run directory (it has no {run.CONFIG}); "
                          "give the folder that `ganforge train` printed, e.g. runs/2024-01-01_12-00-00_quickstart")
    config_text = run.config.read_text()
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{run.config} is not valid YAML: {e}") from None
    config = config if isinstance(config, dict) else {}
    facts = runfiles.read_facts(path, config)
    errors_file = run.data_errors
    errors = errors_file.read_text().splitlines() if errors_file.is_file() else []
    return RunData(
        path=path, config=runfiles.split_saved_config(config)[0], config_text=config_text, facts=facts,
        summary=_read_json(run.summary), records=read_metrics(run.metrics),
        manifest=_read_json(run.manifest),
        epoch_grids=_grids(run.samples, _EPOCH_GRID, "epoch"),
        step_grids=_grids(run.samples, _STEP_GRID, "step"),
        data_errors=errors, diagnostics=read_metrics(run.diagnostics))
