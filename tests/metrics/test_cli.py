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


def test_eval_scores_two_folders_like_a_run(trained_run, tmp_path, private_cache, capsys, fashion_images):
    """--real A --fake B: the same extractor, statistics cache, report keys and table as `eval RUN`."""
    from conftest import write_images

    from ganforge.metrics.evaluate import evaluate_sources

    run, images = trained_run
    assert main(["eval", str(run), "--real", str(images), "--n", str(N_EVAL), "--metrics", "fid,kid,is,pr",
                 "--device", "cpu"]) == 0
    by_run = json.loads((run / "eval" / f"run-effnet-lite0-n{N_EVAL}.json").read_text())
    assert len(list(private_cache.iterdir())) == 1  # the real images' features
    fake = tmp_path / "fake"
    assert main(["sample", str(run), "--seeds", f"0-{N_EVAL - 1}", "--out", f"{fake}/"]) == 0
    capsys.readouterr()
    out = tmp_path / "two.json"
    assert main(["eval", "--fake", str(fake), "--real", str(images), "--n", str(N_EVAL), "--metrics", "fid,kid,is,pr",
                 "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    two = json.loads(out.read_text())
    # The fake images' own size (32 px, the run's) is the default, so the real side is the run's cached file.
    assert two["image_size"] == 32 and len(list(private_cache.iterdir())) == 2
    metric_keys = {k for k in by_run if k.endswith("_effnet_lite0")}
    assert metric_keys and metric_keys <= set(two) and two["n_generated"] == two["n_real"] == N_EVAL
    assert two["fake"] == str(fake) and two["real"] == str(images) and two["features"] == "effnet-lite0"
    for key in metric_keys:
        assert two[key] == two[key] and ("_std_" in key or f"{key} " in printed)  # a number, in the table
    assert "not comparable with published" in printed and f"wrote {out}" in printed
    api = evaluate_sources(str(fake), str(images), 32, metrics="fid,kid,is,pr", n=N_EVAL)
    assert all(abs(api[k] - two[k]) < 1e-9 for k in metric_keys)  # cached features give the same numbers

    # A set against itself, and a second real set (other clothes) against the first.
    other = tmp_path / "other"
    write_images(other, fashion_images[500:], 16)
    assert main(["eval", "--fake", str(images), "--real", str(images), "--n", str(N_EVAL), "--metrics", "fid,pr",
                 "--out", str(tmp_path / "same.json"), "--device", "cpu"]) == 0
    same = json.loads((tmp_path / "same.json").read_text())
    assert abs(same["fid_effnet_lite0"]) < 1e-3 and same["precision_effnet_lite0"] == 1.0
    assert same["image_size"] == 40  # the images' own size
    assert main(["eval", "--fake", str(other), "--real", str(images), "--n", str(N_EVAL), "--metrics", "fid",
                 "--size", "32", "--out", str(tmp_path / "o.json"), "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["fid_effnet_lite0"] > 1.0

    # A run given as --fake is sampled as `eval RUN` samples it (its folder holds grids, never scored as images).
    assert main(["eval", "--fake", str(run), "--real", str(images), "--n", str(N_EVAL), "--metrics", "fid,kid,is,pr",
                 "--device", "cpu"]) == 0
    again = json.loads((run / "eval" / f"run-effnet-lite0-n{N_EVAL}.json").read_text())
    assert all(again[k] == by_run[k] for k in metric_keys)


def test_eval_two_sets_errors_say_what_to_give(trained_run, tmp_path, capsys):
    run, images = trained_run
    cases = [
        (["--fake", str(images)], "needs --real SOURCE"),
        ([str(run), "--fake", str(images), "--real", str(images)], "not both"),
        ([str(run), "--size", "32"], "--size 32 goes with --fake"),
        (["--real", str(images)], "give a RUN to score"),
        (["--fake", str(tmp_path / "missing"), "--real", str(images)], "does not exist"),
        (["--fake", str(images), "--real", str(tmp_path / "gone")], "does not exist"),
    ]
    for argv, message in cases:
        assert main(["eval", *argv, "--n", str(N_EVAL), "--device", "cpu"]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_eval_two_sets_reads_zips_and_prepared_sets(trained_run, tmp_path, capsys):
    import zipfile

    run, images = trained_run
    archive = tmp_path / "real.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(images.iterdir()):
            z.write(p, f"clothes/{p.name}")
    prepared = tmp_path / "prepared"
    assert main(["prepare", str(images), str(prepared), "--size", "32", "--workers", "0", "--quiet"]) == 0
    out = tmp_path / "z.json"
    assert main(["eval", "--fake", str(prepared), "--real", f"{archive}:clothes", "--n", str(N_EVAL),
                 "--metrics", "fid,pr", "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["image_size"] == 32  # the prepared set's size
    # The same images as a prepared set and as a zip: the same pictures, so a near-zero distance.
    assert report["fid_effnet_lite0"] < 5 and report["n_real"] == N_EVAL
    capsys.readouterr()
    assert main(["eval", "--fake", str(prepared), "--real", str(archive), "--size", "40", "--device", "cpu"]) == 2
    assert "give --size 32" in capsys.readouterr().err
