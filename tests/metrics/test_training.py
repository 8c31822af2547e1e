"""In-training evaluation: scores on the metrics lines, the best checkpoint kept and named in the summary."""
from __future__ import annotations

import json

import pytest

import ganforge
from .conftest import N_EVAL
from ganforge.config import ConfigError
from ganforge.storage import safe_load


def test_eval_every_logs_scores_and_keeps_the_best_checkpoint(tmp_path, image_folder, tiny):
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the extra 'effnet': pip install 'ganforge[effnet]'")
    cfg = tiny(image_folder, "train.max_steps=4", "train.log_every=1", "eval.every=2", f"eval.n={N_EVAL}",
                      "eval.metrics=fid,kid,copy", "train.keep_checkpoints=1", "ema.enabled=true")
    run = ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in lines if "fid_effnet_lite0" in r]
    assert [r["step"] for r in scored] == [2, 4]
    assert all("loss_d" in r and "kid_effnet_lite0" in r and r["eval_seconds"] > 0 for r in scored)
    assert all(r["copy_ratio_effnet_lite0"] > 0 for r in scored)  # 4 steps of training copy nothing
    best = min(scored, key=lambda r: r["fid_effnet_lite0"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_checkpoint"] == "checkpoints/best.pt"
    assert summary["best_metric"] == "fid_effnet_lite0" and summary["best_step"] == best["step"]
    assert summary["best_value"] == pytest.approx(best["fid_effnet_lite0"], abs=1e-5)
    manifest = json.loads((run / "checkpoints" / "manifest.json").read_text())
    assert manifest["best"]["step"] == best["step"]
    assert safe_load(run / "checkpoints" / "best.pt")["progress"]["step"] == best["step"]
    assert len(manifest["checkpoints"]) == 1  # keep_checkpoints prunes step files; best.pt stays beside them
    # Evaluating draws nothing from the training's random numbers: the same run without it trains the same.
    plain = ganforge.train(tiny(image_folder, "train.max_steps=4", "train.log_every=1", "train.keep_checkpoints=1",
                                "ema.enabled=true"), runs_dir=tmp_path / "plain", log_format="quiet")
    plain_lines = [json.loads(line) for line in (plain / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss_d"] for r in plain_lines] == [r["loss_d"] for r in lines]


def test_eval_settings_that_cannot_work_stop_before_training(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "train.max_steps=2", "eval.every=1", "eval.best=precision", "eval.metrics=fid")
    with pytest.raises(ConfigError, match="add pr to eval.metrics"):
        ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
    cfg = tiny(image_folder, "train.max_steps=2", "eval.every=1", "eval.features=clip")
    with pytest.raises(ConfigError, match="unknown feature extractor 'clip'"):
        ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
