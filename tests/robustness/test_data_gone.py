"""Data that goes away mid-run (a Colab Drive or a network mount disconnecting): the run saves, stops within
seconds with a clear error, and never hangs; a SIGTERM while the loader is stuck still saves and exits.

Each test trains a real process with real loader worker processes (``data.num_workers=2``), breaks its
data while it trains, and fails if the process is still alive after a timeout."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from ganforge.storage import CheckpointStore, safe_load

from .conftest import cli_env, ganforge_cmd, tiny_args

pytestmark = pytest.mark.slow  # each trains a real process with loader workers (10-40 s on 2 busy cores)

#: Long enough never to end by itself within a test; workers as a user's run has them.
ENDLESS = ["train.epochs=100000", "data.num_workers=2", "data.index_cache="]
#: How long a process may take to stop after its data went away (issue 42 asks for 30 s; the rest is slack
#: for a loaded machine).
STOP_WITHIN = 30


def _start(tmp_path: Path, source, *extra: str) -> tuple[subprocess.Popen, Path, Path]:
    runs = tmp_path / "runs"
    log = tmp_path / "stderr.txt"
    proc = subprocess.Popen(ganforge_cmd("train", "--quiet", "--runs-dir", str(runs), *tiny_args(source, *ENDLESS, *extra)),
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=cli_env(), start_new_session=True)
    return proc, runs, log


def _wait_until_trained(proc: subprocess.Popen, runs: Path, steps: int = 6, timeout: float = 120) -> Path:
    """The run directory, once its metrics reach ``steps`` (past its first checkpoints)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its data was taken away"
        for metrics in runs.glob("*/metrics.jsonl"):
            lines = [line for line in metrics.read_text().splitlines() if line.endswith("}")]
            if lines and json.loads(lines[-1])["step"] >= steps:
                return metrics.parent
        time.sleep(0.05)
    raise AssertionError("the run did not start training")


def _wait_for_exit(proc: subprocess.Popen, since: float) -> float:
    """Seconds from ``since`` until the process exited; kills it and fails when it hangs."""
    try:
        proc.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"the run was still alive {STOP_WITHIN} s after its data went away: it hangs")
    return time.monotonic() - since


def _assert_saved_and_loads(run: Path) -> dict:
    found = CheckpointStore(run / "checkpoints").latest_valid(warn=lambda *_: None)
    assert found is not None
    path, entry = found
    state = safe_load(path)  # the newest checkpoint loads (and passed its checksum)
    assert state["progress"]["step"] == entry["step"]
    return entry


def _assert_clear_data_error(proc, log: Path, run: Path, source) -> dict:
    err = log.read_text()
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("ganforge train: error:")]
    assert "went away during training" in line and str(source) in line
    entry = _assert_saved_and_loads(run)
    assert f"Training stopped at step {entry['step']}" in line
    assert f"ganforge train --resume {run}" in line
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped: data error"
    return entry


def _folder_copy(images: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "drive" / "images"
    shutil.copytree(images, folder)
    return folder


@pytest.mark.parametrize("how", ["files deleted", "folder removed"])
def test_a_folder_that_goes_away_stops_the_run_with_a_checkpoint(tmp_path, images, how):
    folder = _folder_copy(images, tmp_path)
    proc, runs, log = _start(tmp_path, folder)
    run = _wait_until_trained(proc, runs)
    gone = time.monotonic()
    if how == "files deleted":
        for p in folder.iterdir():
            p.unlink()
    else:
        shutil.rmtree(folder.parent)
    took = _wait_for_exit(proc, gone)
    _assert_clear_data_error(proc, log, run, folder)
    print(f"{how}: stopped {took:.1f} s after the data went away")  # with -s


def test_a_zip_truncated_mid_run_stops_the_run_with_a_checkpoint(tmp_path, images):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for p in sorted(images.iterdir()):
            z.write(p, p.name)
    proc, runs, log = _start(tmp_path, archive)
    run = _wait_until_trained(proc, runs)
    gone = time.monotonic()
    with open(archive, "r+b") as f:  # as an overwrite or a cut-off download leaves it
        f.truncate(1000)
    _wait_for_exit(proc, gone)
    _assert_clear_data_error(proc, log, run, archive)


def test_a_prepared_set_shrunk_mid_run_stops_the_run_with_a_checkpoint(tmp_path, images):
    prepared = tmp_path / "prepared"
    done = subprocess.run(ganforge_cmd("prepare", str(images), str(prepared), "--size", "32", "--channels", "3"),
                          capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    proc, runs, log = _start(tmp_path, prepared)
    run = _wait_until_trained(proc, runs)
    gone = time.monotonic()
    images_file = prepared / "images.u8"
    os.truncate(images_file, images_file.stat().st_size // 3)
    _wait_for_exit(proc, gone)
    err = log.read_text()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "changed during training" in err and "ganforge prepare again" in err
    assert f"ganforge train --resume {run}" in err
    _assert_saved_and_loads(run)


def test_a_few_files_gone_are_replaced_and_counted_and_training_goes_on(tmp_path, images):
    folder = _folder_copy(images, tmp_path)
    proc, runs, log = _start(tmp_path, folder, "train.epochs=8", "data.max_bad_fraction=0.05")
    run = _wait_until_trained(proc, runs, steps=2)
    for name in sorted(p.name for p in folder.iterdir())[:3]:  # 3 of 64: under 5 %
        (folder / name).unlink()
    proc.wait(timeout=180)
    assert proc.returncode == 0, log.read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 32
    listed = (run / "data_errors.txt").read_text().splitlines()
    assert 1 <= len(listed) <= 3 and all("could not be read" in line for line in listed)


def _hang(folder: Path) -> None:
    """Every file becomes a FIFO with no writer: opening it blocks for ever, with no error, as a read from a
    network mount that stopped answering does."""
    for p in list(folder.iterdir()):
        p.unlink()
        os.mkfifo(p)


def test_a_loader_that_hangs_without_an_error_times_out_and_stops_the_run_with_a_checkpoint(tmp_path, images):
    folder = _folder_copy(images, tmp_path)
    proc, runs, log = _start(tmp_path, folder, "data.timeout_seconds=3")
    run = _wait_until_trained(proc, runs)
    hung = time.monotonic()
    _hang(folder)
    took = _wait_for_exit(proc, hung)
    err = log.read_text()
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("ganforge train: error:")]
    assert f"delivered no batch for 3 s (data.timeout_seconds): reading {folder} hangs" in line, line
    entry = _assert_saved_and_loads(run)
    assert f"Training stopped at step {entry['step']}" in line and line.endswith(f"ganforge train --resume {run}")
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped: data error"
    print(f"hung loader: stopped {took:.1f} s after the files hung")  # with -s


@pytest.mark.parametrize("workers", [2, 0])
def test_sigterm_while_the_loader_is_stuck_still_saves_and_exits(tmp_path, images, workers):
    # workers=0: the training process itself is the one blocked in open(); the signal interrupts it.
    folder = _folder_copy(images, tmp_path)
    proc, runs, log = _start(tmp_path, folder, f"data.num_workers={workers}")
    run = _wait_until_trained(proc, runs)
    _hang(folder)
    metrics = run / "metrics.jsonl"
    last, still = metrics.stat().st_size, time.monotonic()
    while time.monotonic() - still < 3:  # stuck: no new metrics line for 3 s (the prefetched batches are used up)
        time.sleep(0.1)
        if metrics.stat().st_size != last:
            last, still = metrics.stat().st_size, time.monotonic()
        assert proc.poll() is None, log.read_text()
    stuck_at = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)  # as a scheduler stops a job: the whole process group
    _wait_for_exit(proc, stuck_at)
    err = log.read_text()
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err and "Traceback" not in err, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    entry = _assert_saved_and_loads(run)
    assert entry["step"] == summary["step"]
