"""ganforge eval as a user runs it: a real subprocess on a trained run, and its errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from ganforge.cli import main

from .conftest import N_EVAL


def test_eval_prints_a_table_writes_json_and_explains_errors(trained_run, tmp_path, monkeypatch, capsys):
    run, images = trained_run
    out = subprocess.run([sys.executable, "-m", "ganforge", "eval", str(run), "--data", str(images), "--n", str(N_EVAL),
                          "--metrics", "fid,kid,is,pr", "--features", "effnet-lite0", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    report = json.loads((run / "eval" / f"run-effnet-lite0-n{N_EVAL}.json").read_text())
    assert report["features"] == "effnet-lite0" and report["n_generated"] == N_EVAL and report["seed"] == 0
    for key in ("fid_effnet_lite0", "kid_effnet_lite0", "is_effnet_lite0", "precision_effnet_lite0"):
        assert f"{key} " in out.stdout and report[key] == report[key]  # in the table, and a number (not NaN)
    assert "±" in out.stdout and "not comparable with published" in out.stdout

    # Offline without the Inception weights: exit 2 and the exact file and folder, no traceback.
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert main(["eval", str(run), "--n", str(N_EVAL), "--features", "inception", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "weights-inception-2015-12-05-6726825d.pth" in err and str(tmp_path / "torch") in err
    assert main(["eval", str(run), "--metrics", "fid,foo", "--device", "cpu"]) == 2
    assert "unknown metric 'foo'" in capsys.readouterr().err
