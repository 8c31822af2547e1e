"""The scores a run has, for the report: independent ones first, ImageNet-feature ones labelled when training
shared their network's kind of features (:mod:`ganforge.metrics.overlap`, docs/evaluation.md).

Scores come from the run's last in-training evaluation (``eval.every``, on ``metrics.jsonl``) and from the
files ``ganforge eval`` writes into ``RUN/eval/``.  A finished run whose training used ImageNet features
and that has no independent score yet gets one when its report is finished (:func:`add_independent_scores`):
SWD of the final generator against its real images, which needs no network and works offline, and
FD-DINOv2 where the DINOv2 weights are already on this machine (nothing is downloaded for a report).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ganforge.config import ConfigError
from ganforge.metrics import overlap
from ganforge.reporting.rundata import RunData, _is_number
from ganforge.runfiles import RunDir
from ganforge.storage import atomic_write_text

#: Key prefixes of scores (``fid_effnet_lite0``, ``swd_64px``, ...); ``*_std_*`` are shown beside their score.
SCORE_PREFIXES = ("fid_", "kid_", "is_", "precision_", "recall_", "density_", "coverage_", "copy_ratio_", "swd_")
#: Generated (and real) images the report's independent score uses: SWD's levels are steady at this many.
REPORT_N = 500


@dataclass
class ScoreRow:
    key: str
    value: str
    where: str  # which evaluation gave it
    independent: bool
    label: str  # overlap.SHARED_LABEL, or ""


def is_score(key: str) -> bool:
    return key.startswith(SCORE_PREFIXES) and "_std_" not in key


def _from_eval_files(run: RunData) -> list[tuple[str, dict]]:
    folder = RunDir(run.path).eval
    found = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict):
            found.append((f"{RunDir.EVAL}/{path.name}", data))
    return found


def _from_training(run: RunData) -> list[tuple[str, dict]]:
    evaluated = [r for r in run.records if any(is_score(k) for k in r)]
    if not evaluated:
        return []
    last = evaluated[-1]
    return [(f"eval.every, step {last['step']}", last)]


def score_rows(run: RunData) -> list[ScoreRow]:
    """Every score the run has (the latest value of each key), independent ones first."""
    latest: dict[str, tuple[str, str]] = {}
    for where, data in _from_training(run) + _from_eval_files(run):
        for key, value in data.items():
            if is_score(key) and _is_number(value):
                text = f"{value:.4g}"
                std = data.get(key.replace("_", "_std_", 1))
                if _is_number(std):
                    text += f" ± {std:.2g}"
                latest.pop(key, None)
                latest[key] = (text, where)
    shared = set(overlap.shared_keys(run.config, latest))
    rows = [ScoreRow(k, text, where, overlap.is_independent_score(k),
                     overlap.SHARED_LABEL if k in shared else "") for k, (text, where) in latest.items()]
    # Independent scores first, the mean of SWD's levels before the levels; otherwise as found.
    return sorted(rows, key=lambda r: (not r.independent, r.key != "swd_mean"))


def has_independent_score(run: RunData) -> bool:
    return any(r.independent for r in score_rows(run))


def add_independent_scores(run: RunData, n: int = REPORT_N) -> list[Path]:
    """For a run whose training used ImageNet features and that has no independent score: SWD of its final
    generator (and FD-DINOv2 when the weights are here), written to ``RUN/eval/`` as ``ganforge eval`` writes
    them.  Nothing when the run has no final generator yet, or its real images are gone."""
    generator = RunDir(run.path).generator
    if not overlap.training_imagenet_features(run.config) or has_independent_score(run) or not generator.is_file():
        return []
    import torch

    from ganforge.metrics.dinov2 import have_weights
    from ganforge.metrics.evaluate import evaluate

    device = "cuda" if torch.cuda.is_available() else "cpu"
    source = str(run.cfg("data.source", ""))
    written = []
    for features in ("swd", "dinov2") if have_weights() else ("swd",):
        t0 = time.perf_counter()
        # A minute or so on a CPU: say what the wait is for.
        print(f"ganforge: scoring the final generator with {features} for the report ({n} images; training "
              "used ImageNet features, so the report leads with a score that owes nothing to them)", flush=True)
        try:
            report = evaluate(str(generator), source, metrics=("fid",), features=features, n=n, device=device)
        except (ConfigError, OSError) as e:  # the real images moved, timm missing: the report says how to score
            print(f"ganforge: no {features} score for the report ({str(e).splitlines()[0]})", flush=True)
            continue
        path = RunDir(run.path).eval / f"generator-{features}-n{n}.json"
        head = {"source": str(generator), "data": source, "image_size": run.cfg("data.image_size"),
                "features": features, "metrics": ["swd"] if features == "swd" else ["fid"], "seed": 0,
                "written_by": "the report: training used ImageNet features"}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({**head, **report, "seconds": round(time.perf_counter() - t0, 2),
                                    "device": device, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=2))
        written.append(path)
    return written
