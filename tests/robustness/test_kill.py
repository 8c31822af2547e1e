"""SIGKILL at any moment, including in the middle of writing a checkpoint, loses only the work since the last save."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import torch

from ganforge.cli import main
from ganforge.storage import CheckpointStore, safe_load

from .conftest import STEPS, assert_bitwise_equal, cli_env, ganforge_cmd, one_thread, temporaries, tiny_args


def _save_forever(folder, first_step: int) -> None:
    """In a forked child: save checkpoints of ~4 MB as fast as possible until killed."""
    torch.set_num_threads(1)  # as DataLoader workers do after a fork
    store = CheckpointStore(folder, keep=2)
    step = first_step
    while True:
        store.save({"weights": torch.full((1_000_000,), float(step)), "epoch": 0}, step)
        step += 1


def _written_by(pid: int, folder) -> list[str]:
    """The temporary files of process ``pid``: it was inside a write."""
    return [name for name in temporaries(folder) if name.endswith(f".tmp-{pid}")]


def test_sigkill_at_random_moments_never_leaves_a_bad_latest_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    rng = random.Random(0)
    kills, mid_write, last_step, window = 0, 0, -1, 0.05
    while kills < 60 and (mid_write < 3 or kills < 12 or last_step <= 0):
        found = CheckpointStore(folder).latest_valid(warn=lambda *_: None)
        first = found[1]["step"] + 1 if found else 0  # as a resumed run would
        pid = os.fork()
        if pid == 0:  # the child writes until it is killed
            try:
                _save_forever(folder, first)
            finally:
                os._exit(1)
        if kills % 2:  # every other kill at a random moment ...
            time.sleep(rng.uniform(0.0, window))
        else:  # ... the others as soon as a write is seen under way
            deadline = time.monotonic() + 10
            while not _written_by(pid, folder) and time.monotonic() < deadline:
                time.sleep(0.0005)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        kills += 1
        mid_write += bool(_written_by(pid, folder))  # killed between open() and rename(): a half-written file
        progressed = (CheckpointStore(folder).latest_valid(warn=lambda *_: None) or (None, {"step": -1}))[1]["step"]
        window = window * 1.5 if progressed <= last_step else window  # a busy machine: give the child longer

        # What was kept: a manifest whose newest entry passes its checksum and loads.  (Only a kill between
        # the very first rename and the first manifest may leave no manifest: the file is then found by name.)
        warnings: list[str] = []
        found = CheckpointStore(folder).latest_valid(warn=warnings.append)
        assert not [w for w in warnings if "fails its checksum" in w], warnings
        if found is None:
            assert last_step == -1, "a checkpoint that had been saved was lost"
            continue
        path, entry = found
        state = safe_load(path)
        assert torch.equal(state["weights"], torch.full((1_000_000,), float(entry["step"])))
        assert entry["step"] >= last_step
        last_step = entry["step"]
        if (folder / "manifest.json").exists():
            assert len(json.loads((folder / "manifest.json").read_text())["checkpoints"]) <= 2
    assert mid_write >= 1, f"no kill landed inside a write in {kills} tries"
    assert last_step > 0
    # Half-written files of dead processes are removed by the next save.
    CheckpointStore(folder, keep=2).save({"weights": torch.zeros(1), "epoch": 0}, last_step + 1)
    assert temporaries(folder) == []


def test_sigkill_during_training_then_resume_latest_continues_exactly(tmp_path, images, reference_run, capsys):
    runs = tmp_path / "runs"
    # A checkpoint every step, so that the kill most likely lands inside a checkpoint write.
    proc = subprocess.Popen(ganforge_cmd("train", "--quiet", "--runs-dir", str(runs),
                                         *tiny_args(images, "train.midsave_steps=1")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())
    deadline, killed_mid_write = time.monotonic() + 90, False
    while time.monotonic() < deadline and proc.poll() is None:
        folders = list(runs.glob("*/checkpoints"))
        if folders and temporaries(folders[0]) and any(folders[0].glob("step_*.pt")):
            killed_mid_write = True
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run,) = runs.iterdir()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = CheckpointStore(run / "checkpoints").latest_valid(warn=lambda *_: None)[1]

    with one_thread():  # the resume runs in this process, single-threaded like the killed one
        assert main(["train", "--resume", "latest", "--runs-dir", str(runs)]) == 0
    assert f"resuming {run} from {before['file']}" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert temporaries(run / "checkpoints") == []
    final = f"checkpoints/step_{STEPS:08d}.pt"
    assert_bitwise_equal(run / final, reference_run / final)
    print(f"killed inside a checkpoint write: {killed_mid_write}; resumed from {before['file']}")  # with -s
