"""The report's independent scores for a run whose training used ImageNet features (reporting/scores.py)."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import random_dinov2_checkpoint
from ganforge.reporting.rundata import load_run
from ganforge.reporting.scores import add_independent_scores, score_rows


@pytest.mark.slow  # the feature-matching run (shared with the browser test) and two ViT-S passes of 8 images
def test_fd_dinov2_joins_swd_where_its_weights_are_here_and_nothing_is_scored_twice(
        feature_matching_run, tmp_path, monkeypatch):
    pytest.importorskip("timm", reason="needs the extra 'metrics'")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")  # a report never downloads
    run = tmp_path / feature_matching_run.name
    shutil.copytree(feature_matching_run, run)
    shutil.rmtree(run / "eval")

    written = add_independent_scores(load_run(run), n=8)  # no DINOv2 weights here: SWD alone
    assert [p.name for p in written] == ["generator-swd-n8.json"]
    (run / "eval" / "generator-swd-n8.json").unlink()
    random_dinov2_checkpoint(tmp_path / "torch_home" / "hub" / "checkpoints")
    written = add_independent_scores(load_run(run), n=8)
    assert [p.name for p in written] == ["generator-swd-n8.json", "generator-dinov2-n8.json"]
    fd = json.loads((run / "eval" / "generator-dinov2-n8.json").read_text())
    assert fd["fid_dinov2"] > 0 and fd["n_generated"] == 8 and fd["features"] == "dinov2"

    rows = score_rows(load_run(run))
    independent = [r.key for r in rows if r.independent]
    assert independent[0] == "swd_mean" and "fid_dinov2" in independent
    assert [r.independent for r in rows] == sorted((r.independent for r in rows), reverse=True)  # first
    assert add_independent_scores(load_run(run), n=8) == []  # it has them now
