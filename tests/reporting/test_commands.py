"""ganforge report / runs / interpolate, and sample --truncation, as a user runs them (real subprocesses
for the entry point; in-process calls of the same main() for the rest, to stay fast)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from ganforge.cli import main


def test_report_command_rewrites_every_artefact(run_copy):
    for name in ["report.html", "curves.png", "timeline.gif"]:
        (run_copy / name).unlink()
    out = subprocess.run([sys.executable, "-m", "ganforge", "report", str(run_copy)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "report.html" in out.stdout and "file://" in out.stdout
    for name in ["report.html", "curves.png", "timeline.gif"]:
        assert (run_copy / name).is_file(), name


def test_report_of_a_run_killed_mid_write(run_copy):
    """A half-written last metrics line and no summary.json (a killed run) still give a page."""
    (run_copy / "summary.json").unlink()
    with open(run_copy / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "loss_d": 0.')
    assert main(["report", str(run_copy), "--no-media"]) == 0
    html = (run_copy / "report.html").read_text()
    assert "running or stopped" in html and "epoch 3" in html


def test_report_errors_name_the_problem(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a ganforge run directory" in err and "ganforge runs" in err
    assert main(["report", "latest", "--runs-dir", str(tmp_path)]) == 2
    assert "no run directories" in capsys.readouterr().err


def test_runs_lists_every_run(reported_run, other_run, capsys):
    assert main(["runs", str(reported_run.parent)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "preset", "dataset", "steps", "best", "metric", "status", "last", "checkpoint"]
    rows = {l.split()[0]: l.split() for l in lines[2:]}
    assert set(rows) == {reported_run.name, other_run.name}
    summary = json.loads((reported_run / "summary.json").read_text())
    row = rows[reported_run.name]
    assert row[1] == "quickstart" and row[3] == str(summary["step"]) == "9"
    assert row[-2] == "finished" and row[-1] == summary["last_checkpoint"]
    assert rows[other_run.name][3] == "3"


def test_runs_shows_the_best_metric(run_copy, capsys):
    # An evaluation record as the in-training evaluation writes it (eval.best names the family: fid).
    with open(run_copy / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 6, "epoch": 2, "fid_effnet_lite0": 41.5}) + "\n")
        f.write(json.dumps({"step": 9, "epoch": 3, "fid_effnet_lite0": 37.25}) + "\n")
    assert main(["runs", str(run_copy.parent)]) == 0
    assert "fid_effnet_lite0 37.25" in capsys.readouterr().out


def test_best_metric_follows_the_evaluation_rule(run_copy, capsys):
    # Precision is better higher; the evaluation names its key after the feature extractor.
    config = run_copy / "config.yaml"
    config.write_text(config.read_text().replace("best: fid", "best: precision"))
    with open(run_copy / "metrics.jsonl", "a") as f:
        for step, value in [(3, 0.31), (6, 0.52), (9, 0.47)]:
            f.write(json.dumps({"step": step, "epoch": step // 3, "precision_effnet_lite0": value}) + "\n")
    assert main(["runs", str(run_copy.parent)]) == 0
    assert "precision_effnet_lite0 0.52" in capsys.readouterr().out
    # Once the run's summary records its best (as the evaluation callback writes it), that is what shows.
    summary = json.loads((run_copy / "summary.json").read_text())
    summary.update(best_metric="precision_effnet_lite0", best_value=0.5, best_step=6)
    (run_copy / "summary.json").write_text(json.dumps(summary))
    assert main(["runs", str(run_copy.parent)]) == 0
    assert "precision_effnet_lite0 0.5 " in capsys.readouterr().out


def test_runs_compare_shows_config_differences_and_metrics(reported_run, other_run, capsys):
    assert main(["runs", str(reported_run.parent), "--compare", reported_run.name, str(other_run)]) == 0
    out = capsys.readouterr().out
    config_part, metrics_part = out.split("metrics:")
    diff = {l.split()[0]: l.split()[1:] for l in config_part.splitlines()[3:] if l.strip()}
    assert diff["optim.g.lr"] == ["0.0002", "0.0005"]
    assert diff["train.epochs"] == ["3", "1"]
    assert "model.ngf" not in diff  # same in both
    metrics = {l.rsplit(None, 2)[0]: l.rsplit(None, 2)[1:] for l in metrics_part.splitlines()[3:] if l.strip()}
    assert metrics["steps"] == ["9", "3"]
    last_a = json.loads((reported_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert float(metrics["loss_g (last)"][0]) == pytest.approx(last_a["loss_g"], rel=1e-3)


def test_runs_errors(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs under" in capsys.readouterr().out


def test_interpolate_writes_a_grid_and_a_looping_gif(reported_run, tmp_path, capsys):
    out = tmp_path / "walk.gif"
    assert main(["interpolate", str(reported_run), "--steps", "5", "--points", "3", "--rows", "4",
                 "--out", str(out), "--truncation", "0.8"]) == 0
    frames = (3 - 1) * (5 - 1) + 1  # 9 positions along each walk
    with Image.open(tmp_path / "walk.png") as grid:
        assert grid.size == (frames * 34 + 2, 4 * 34 + 2)  # one walk per row
    with Image.open(out) as gif:
        assert gif.n_frames == 2 * frames - 2  # there and back
        assert gif.size == (2 * 34 + 2, 2 * 34 + 2)  # 4 walks as 2 x 2
        assert gif.info["loop"] == 0
        gif.seek(0)
        first = gif.convert("RGB").tobytes()
        gif.seek(frames - 1)
        middle = gif.convert("RGB").tobytes()
    assert first != middle  # the walk moves


def test_interpolate_errors(reported_run, tmp_path, capsys):
    assert main(["interpolate", str(reported_run), "--out", str(tmp_path / "walk.png")]) == 2
    assert "give a .gif file" in capsys.readouterr().err
    assert main(["interpolate", str(reported_run), "--steps", "1", "--out", str(tmp_path / "w.gif")]) == 2
    assert "--steps must be at least 2" in capsys.readouterr().err


def test_sample_truncation(reported_run, tmp_path, capsys):
    def sample(*flags):
        path = tmp_path / f"s{len(list(tmp_path.iterdir()))}.png"
        assert main(["sample", str(reported_run), "--n", "16", "--out", str(path), "--bn", "running", *flags]) == 0
        with Image.open(path) as img:
            return img.convert("RGB").tobytes()

    plain = sample()
    assert sample("--truncation", "1") == plain  # psi = 1 is no truncation: same seed, same images
    assert sample("--truncation", "0.5") != plain
    assert main(["sample", str(reported_run), "--truncation", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert "psi must be in (0, 1]" in capsys.readouterr().err
