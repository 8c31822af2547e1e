"""Real training runs on messy data: broken files are skipped and listed, hostile zips are harmless,
and a dataset too broken to use stops before training with a message that names the files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ganforge
from ganforge.data import DataError, build_loader


def _files_under(root: Path, skip: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and skip not in p.parents}


def _error_names(run: Path) -> list[str]:
    return sorted(line.split("\t")[0] for line in (run / "data_errors.txt").read_text().splitlines())


def test_training_on_a_messy_folder_skips_and_lists_exactly_the_broken_files(messy, tmp_path, tiny):
    cfg = tiny(messy.root, "train.max_steps=2", "data.labels=true")
    run = ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["images"] == len(messy.good) + len(messy.broken) == 93
    assert summary["skipped_images"] == len(messy.broken) == 3
    assert _error_names(run) == messy.broken
    assert summary["step"] == 2


def test_training_from_a_zip_with_a_hostile_member_writes_only_in_the_run_dir(messy, tmp_path, tiny, zip_folder):
    png = (messy.root / messy.good[0]).read_bytes()
    (tmp_path / "data").mkdir()
    archive = zip_folder(messy.root, tmp_path / "data" / "faces.zip", inner="img",
                         extra={"../x.png": png, "img/../../y.png": png})
    runs = tmp_path / "runs"
    before = _files_under(tmp_path, runs)
    cfg = tiny(f"{archive}:img", "train.max_steps=2", f"data.index_cache={runs / 'index'}")
    run = ganforge.train(cfg, runs_dir=runs, log_format="quiet")
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert _files_under(tmp_path, runs) == before  # nothing extracted, nothing written beside the data
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
    assert not (tmp_path.parent / "x.png").exists()
    assert _error_names(run) == sorted(messy.broken + ["img/../../y.png"])
    lines = (run / "data_errors.txt").read_text()
    assert "unsafe member name" in lines and "empty file" in lines


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "ganforge", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_too_many_broken_files_stop_before_training_with_names(tmp_path, fashion_images, build_messy):
    ds = build_messy(tmp_path / "shaky", fashion_images, copies=1)  # 45 good + 3 broken: 6%
    result = _cli("train", "--data", str(ds.root), "data.channels=3", "data.batch_size=16", "data.num_workers=0",
                  "model.ngf=8", "model.ndf=8", "--runs-dir", str(tmp_path / "runs"), "--quiet", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert "Traceback" not in err
    assert str(ds.root) in err and "3 of 48 files" in err and "data.max_bad_fraction" in err
    assert "zero_bytes.jpg" in err and "truncated.jpg" in err
    assert not list((tmp_path / "runs").rglob("metrics.jsonl"))  # no step was trained


def test_a_folder_of_only_broken_files_says_no_usable_image(tmp_path, tiny):
    for k in range(20):
        (tmp_path / "bad" / f"{k}.jpg").parent.mkdir(exist_ok=True)
        (tmp_path / "bad" / f"{k}.jpg").write_bytes(b"" if k % 2 else b"not a jpeg")
    with pytest.raises(DataError, match="no usable image") as e:
        build_loader(tiny(tmp_path / "bad"), torch.device("cpu"))
    assert str(tmp_path / "bad") in str(e.value) and ".jpg" in str(e.value)
