"""SIGTERM / SIGINT on a real training process: finish the step, save, print the resume command, exit 0."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import ganforge.training.signals as signals_module
from ganforge.cli import main

from .conftest import STEPS, assert_bitwise_equal, cli_env, ganforge_cmd, one_thread, tiny_args


def test_sigterm_saves_says_how_to_resume_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path, images,
                                                                                            reference_run):
    runs = tmp_path / "runs"
    # With a data-loader worker, and the signal sent to the whole process group as a scheduler does.
    proc = subprocess.Popen(ganforge_cmd("train", "--json-log", "--runs-dir", str(runs),
                                         *tiny_args(images, "train.log_every=1", "data.num_workers=1")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            start_new_session=True)
    for line in proc.stdout:  # wait until it is training: the first metrics line (step 1)
        if line.startswith("{"):
            break
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (run,) = runs.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    stopped_at = summary["step"]
    assert summary["status"] == "interrupted" and 1 <= stopped_at < STEPS
    # What was said: the signal, the checkpoint, and the exact command; no "done".
    assert "SIGTERM received: finishing this step" in err
    assert f"stopped by SIGTERM at step {stopped_at}; saved {run}/checkpoints/step_{stopped_at:08d}.pt" in out
    assert f"Resume with:\n  ganforge train --resume {run}\n" in out
    assert "done." not in out
    # What was kept: a checkpoint at the step it stopped at, listed with its checksum.
    assert (run / "checkpoints" / f"step_{stopped_at:08d}.pt").is_file()

    with one_thread():  # the resume runs in this process, single-threaded like the stopped one
        assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    final = f"checkpoints/step_{STEPS:08d}.pt"
    assert_bitwise_equal(run / final, reference_run / final)


def test_a_second_signal_exits_at_once(tmp_path):
    # The handler alone, in a fresh process (no torch to import): first signal sets the flag, second exits.
    script = textwrap.dedent(f"""
        import importlib.util, os, signal, sys, time
        spec = importlib.util.spec_from_file_location("signals", {signals_module.__file__!r})
        signals = importlib.util.module_from_spec(spec); spec.loader.exec_module(signals)
        with signals.StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            print("flag", stop.requested, stop.name, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            print("still running", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "flag True SIGINT"
    assert done.returncode == 128 + signal.SIGTERM
    assert "second signal (SIGTERM): stopping at once" in done.stderr


def test_handlers_are_installed_only_while_training():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with signals_module.StopSignals() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        assert not stop.requested
    assert {s: signal.getsignal(s) for s in before} == before


def test_with_several_processes_ranks_decide_together_every_few_steps():
    # A rank that got the signal must not stop alone (the others would hang in the next all-reduce): the
    # decision is taken together (distributed.any_rank, an all-reduce under torchrun) every `every` steps.
    stop = signals_module.StopSignals(world_size=2, every=3)
    stop.signum = signal.SIGTERM  # as the handler sets it
    assert [stop.check(step) for step in (4, 5, 6, 7)] == [False, False, True, True]
    alone = signals_module.StopSignals()
    assert not alone.check(1)
    alone.signum = signal.SIGINT
    assert alone.check(2) and alone.stopping
