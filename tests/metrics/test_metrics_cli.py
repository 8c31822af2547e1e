"""ganforge eval as a user runs it: a real subprocess on a trained run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import N_EVAL


def ganforge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganforge", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_eval_prints_a_table_and_writes_json(trained_run):
    run, images = trained_run
    out = ganforge("eval", str(run), "--data", str(images), "--n", str(N_EVAL), "--metrics", "fid,kid,is,pr",
                   "--features", "effnet-lite0", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    report = json.loads((run / "eval" / f"run-effnet-lite0-n{N_EVAL}.json").read_text())
    assert report["features"] == "effnet-lite0" and report["n_generated"] == N_EVAL and report["seed"] == 0
    for key in ("fid_effnet_lite0", "kid_effnet_lite0", "is_effnet_lite0", "precision_effnet_lite0"):
        assert f"{key} " in out.stdout and report[key] == report[key]  # in the table, and a number (not NaN)
    assert "±" in out.stdout and "not comparable with published" in out.stdout


def test_eval_offline_without_inception_weights_says_which_file(trained_run, tmp_path):
    run, images = trained_run
    out = ganforge("eval", str(run), "--n", str(N_EVAL), "--features", "inception", "--device", "cpu",
                   env={"GANFORGE_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")})
    assert out.returncode == 2
    assert "weights-inception-2015-12-05-6726825d.pth" in out.stderr and str(tmp_path / "torch") in out.stderr
    assert "Traceback" not in out.stderr
    bad = ganforge("eval", str(run), "--metrics", "fid,foo", "--device", "cpu")
    assert bad.returncode == 2 and "unknown metric 'foo'" in bad.stderr
