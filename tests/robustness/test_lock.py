"""One writer per run: the run lock refuses a second `train --resume`, `report` or `eval` into a run that a
live process is writing, at once and before it writes anything; readers need no lock; the lock dies with
its process (SIGKILL leaves nothing stale)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ganforge.cli import main
from ganforge.storage import RunInUseError, RunLock, lock_holder

from .conftest import cli_env, ganforge_cmd, one_thread

#: A resume long enough to be caught in the act: the reference run's 2 epochs taken to 15 (60 steps).
LONGER = ["train.epochs=15", "train.log_every=1"]


def _metrics_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if "loss_d" in line]


@pytest.mark.slow
def test_two_concurrent_resumes_the_second_is_refused_and_the_first_finishes_cleanly(damaged_copy, capsys):
    run = damaged_copy()
    config_before = (run / "config.yaml").read_bytes()
    # Two copies started at once, as two terminals or a requeued job would: real processes.
    procs = [subprocess.Popen(ganforge_cmd("train", "--resume", str(run), "--quiet", *LONGER),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
             for _ in range(2)]
    deadline = time.monotonic() + 120
    while lock_holder(run, wait=0).get("pid") not in [p.pid for p in procs] and time.monotonic() < deadline:
        time.sleep(0.01)
    holder = lock_holder(run, wait=0)
    assert holder["host"] == socket.gethostname() and holder["command"] == "train --resume"

    # In this process too, while the holder trains (no interpreter start to pay): refused within a second.
    t0 = time.perf_counter()
    with one_thread():
        assert main(["train", "--resume", str(run), "--quiet", *LONGER]) == 2
    assert time.perf_counter() - t0 < 1.0
    assert f"PID {holder['pid']}" in capsys.readouterr().err

    (winner,) = [p for p in procs if p.pid == holder["pid"]]
    (loser,) = [p for p in procs if p is not winner]
    out, err = loser.communicate(timeout=120)
    assert winner.poll() is None, "the first resume ended before the second was refused: make it longer"
    assert loser.returncode == 2, err
    err = err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err  # one line, no traceback
    assert f"run {run} is in use" in err and f"PID {winner.pid} on host {socket.gethostname()}" in err
    assert "train --resume" in err and "kill -TERM" in err and "nothing was written" in err

    out, err = winner.communicate(timeout=300)
    assert winner.returncode == 0, err
    # The reference run logged every 2 steps, the resume every step: each step once.
    steps = _metrics_steps(run)
    assert steps == [2, 4, 6, 8, *range(9, 61)], "duplicated or missing steps in metrics.jsonl"
    assert json.loads((run / "summary.json").read_text())["step"] == 60
    assert (run / "config.yaml").read_bytes() != config_before  # the winner's epochs; one writer only


def test_report_and_eval_into_a_run_being_written_are_refused_readers_are_not(damaged_copy, tmp_path, capsys):
    run = damaged_copy()
    # A real other process holds the run's lock, as a training run does.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from ganforge.storage import RunLock; RunLock(sys.argv[1], 'train').acquire(); "
        "print('locked', flush=True); time.sleep(120)"), str(run)], stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        report_before = (run / "report.html").stat().st_mtime_ns if (run / "report.html").exists() else None
        assert main(["report", str(run), "--no-media"]) == 2
        err = capsys.readouterr().err
        assert f"PID {holder.pid}" in err and "reload the page" in err
        after = (run / "report.html").stat().st_mtime_ns if (run / "report.html").exists() else None
        assert after == report_before
        assert main(["eval", str(run), "--n", "8", "--metrics", "copy", "--device", "cpu"]) == 2
        assert "--out FILE outside the run" in capsys.readouterr().err
        assert not (run / "eval").exists()
        # Readers: sample, runs, export need no lock and work while it is held.
        assert main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "grid.png"), "--device", "cpu"]) == 0
        assert (tmp_path / "grid.png").is_file()
        assert main(["runs", str(run.parent)]) == 0
        assert main(["export", str(run), str(tmp_path / "export")]) == 0
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL left nothing stale: the next writer takes the lock at once.
    assert main(["report", str(run), "--no-media"]) == 0
    assert (run / "report.html").is_file()


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run, "train"):
        with RunLock(run, "report"):  # a command that trains and then reports: one holder
            pass
        probe = subprocess.run([sys.executable, "-c", (
            "import sys; from ganforge.storage import RunLock, RunInUseError\n"
            "try:\n    RunLock(sys.argv[1], 'report').acquire()\nexcept RunInUseError as e:\n    print(e)\n"), str(run)],
            capture_output=True, text=True, env=cli_env(), timeout=60)
        assert f"PID {os.getpid()}" in probe.stdout, probe.stderr
    probe = subprocess.run([sys.executable, "-c", (
        "import sys; from ganforge.storage import RunLock; RunLock(sys.argv[1], 'report').acquire(); print('ok')"),
        str(run)], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert probe.stdout.strip() == "ok", probe.stderr


def test_a_forked_worker_does_not_keep_the_lock_after_its_parent_dies(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # A parent takes the lock and forks a long-lived child (as a data-loader worker), then is SIGKILLed.
    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time; from ganforge.storage import RunLock; RunLock(sys.argv[1], 'train').acquire()\n"
        "child = os.fork()\n"
        "if child == 0:\n    time.sleep(60); os._exit(0)\n"
        "print(child, flush=True); time.sleep(60)\n"), str(run)], stdout=subprocess.PIPE, text=True, env=cli_env())
    child = int(parent.stdout.readline())
    try:
        with pytest.raises(RunInUseError):
            RunLock(run, "report").acquire()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        with RunLock(run, "report"):  # the child lives on, but holds no lock
            os.kill(child, 0)
    finally:
        os.kill(child, signal.SIGKILL)
