"""Fault injection at random instants: SIGKILL a real training process, check what it left, resume, repeat.

Used by tests/robustness/test_faults.py (a few cycles) and benchmarks/robustness_faults.py (50 or more).
The run checkpoints every step (``train.midsave_steps=1``), logs every step, writes a sample grid every
2 steps and refreshes its report at every epoch end, so a kill at a random instant lands in a step, a
checkpoint write, a manifest update or a report refresh.  After every kill:

- the newest checkpoint the manifest names passes its SHA-256 and loads (``weights_only``);
- ``metrics.jsonl`` holds each step at most once and none is missing (a resume forgets the lines
  written after its checkpoint), and the kill lost at most one save interval;
- the next ``train --resume`` starts (it is the next cycle).

At the end the run is resumed to its last step and compared bit for bit with an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ganforge.storage import CheckpointStore, safe_load

#: The run: the tiny deterministic DCGAN of conftest.TINY, saving every step.
SAVE_EVERY = 1


def run_args(images: Path, epochs: int) -> list[str]:
    return [f"data.source={images}", "data.channels=3", "data.batch_size=16", "data.num_workers=0", "model.ngf=8",
            "model.ndf=8", "model.nz=16", "train.n_fixed_noise=16", "train.log_every=1", "train.tensorboard=false",
            "train.report=true", "train.device=cpu", "data.limit=0", "train.deterministic=true",
            f"train.epochs={epochs}", f"train.midsave_steps={SAVE_EVERY}", "train.sample_every=2"]


def env() -> dict:
    import ganforge
    out = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    out["PYTHONPATH"] = str(Path(ganforge.__file__).parent.parent) + os.pathsep + out.get("PYTHONPATH", "")
    return out


def cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganforge", *args]


@dataclass
class Counts:
    cycles: int = 0
    kills_in_checkpoint_write: int = 0
    kills_with_no_new_checkpoint: int = 0
    resumes: int = 0  # train --resume started
    resumes_ok: int = 0  # ... and trained (it was killed while training, or it finished)
    state_lost: int = 0  # kills that lost more than one save interval, or a checkpoint that fails to load
    corrupt_checkpoints: int = 0
    duplicated_steps: int = 0
    missing_steps: int = 0
    exact_at_end: bool | None = None
    notes: list[str] = field(default_factory=list)


def _steps(run: Path) -> list[int]:
    steps = []
    path = run / "metrics.jsonl"
    if not path.exists():
        return steps
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line the kill cut short (the resume drops it)
        if "loss_d" in record:
            steps.append(record["step"])
    return steps


def check_run(run: Path, counts: Counts) -> int:
    """What a kill left: the newest checkpoint loads and passes its checksum; the metrics are whole.
    Returns the checkpoint's step."""
    warnings: list[str] = []
    found = CheckpointStore(run / "checkpoints").latest_valid(warn=warnings.append)
    counts.corrupt_checkpoints += sum("fails its checksum" in w for w in warnings)
    if found is None:
        return 0
    path, entry = found
    try:
        assert safe_load(path)["progress"]["step"] == entry["step"]
    except Exception as e:  # noqa: BLE001 - counted, and reported by the caller
        counts.state_lost += 1
        counts.notes.append(f"{path}: {e}")
        return 0
    steps = _steps(run)
    counts.duplicated_steps += len(steps) - len(set(steps))
    if steps:
        counts.missing_steps += len(set(range(1, max(steps) + 1)) - set(steps))
        if max(steps) - entry["step"] > SAVE_EVERY:
            counts.state_lost += 1
            counts.notes.append(f"logged step {max(steps)} but the newest checkpoint is step {entry['step']}")
    return entry["step"]


def _started(run_parent: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
    """The run directory once ``proc`` holds its lock (it is about to train)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for lock in run_parent.glob("*/run.lock"):
            try:
                if json.loads(lock.read_text()).get("pid") == proc.pid:
                    return lock.parent
            except (OSError, ValueError):
                pass
        time.sleep(0.01)
    raise RuntimeError(f"the training process did not start: {proc.poll()} {proc.stderr.read() if proc.stderr else ''}")


def kill_and_resume(images: Path, runs: Path, cycles: int, epochs: int, seed: int = 0,
                    max_delay: float = 2.0, log=print) -> tuple[Path, Counts]:
    """``cycles`` random SIGKILLs of one run (the first a new run, then ``--resume``), then a last resume
    to the end; returns the run and the counts."""
    rng = random.Random(seed)
    counts = Counts()
    run = None
    for cycle in range(cycles):
        args = (["train", "--quiet", "--runs-dir", str(runs), *run_args(images, epochs)] if run is None
                else ["train", "--quiet", "--resume", str(run)])
        proc = subprocess.Popen(cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
        counts.resumes += run is not None
        resumed = run is not None
        run = _started(runs, proc)
        before = check_run(run, Counts())
        time.sleep(rng.uniform(0.2, max_delay))  # a random instant of the run: a step, a save, a report
        if proc.poll() is not None:  # it finished first: the run is complete
            if proc.returncode != 0:
                raise RuntimeError(f"cycle {cycle}: the run failed: {proc.stderr.read()}")
            counts.resumes_ok += resumed
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        counts.cycles += 1
        counts.resumes_ok += resumed  # it had resumed and was training when killed
        in_write = any(p.name.endswith(f".tmp-{proc.pid}") for p in (run / "checkpoints").glob(".*"))
        counts.kills_in_checkpoint_write += in_write
        after = check_run(run, counts)
        counts.kills_with_no_new_checkpoint += after == before
        log(f"cycle {cycle + 1}: killed at checkpoint step {after}{' inside a checkpoint write' if in_write else ''}")
        if not any((run / "checkpoints").glob("step_*.pt")):  # killed before its first save: start it again
            shutil.rmtree(run)
            run = None
    counts.resumes += 1
    done = subprocess.run(cmd("train", "--quiet", "--resume", str(run)), capture_output=True, text=True, env=env(),
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the last resume failed: {done.stderr}")
    counts.resumes_ok += 1
    check_run(run, counts)
    return run, counts


def uninterrupted(images: Path, runs: Path, epochs: int) -> Path:
    done = subprocess.run(cmd("train", "--quiet", "--runs-dir", str(runs), *run_args(images, epochs)),
                          capture_output=True, text=True, env=env(), timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


def same_final_weights(a: Path, b: Path) -> bool:
    import torch
    name = sorted(p.name for p in (b / "checkpoints").glob("step_*.pt"))[-1]
    sa = torch.load(a / "checkpoints" / name, map_location="cpu", weights_only=True)
    sb = torch.load(b / "checkpoints" / name, map_location="cpu", weights_only=True)
    return all(torch.equal(sa[part][k], sb[part][k]) for part in ("G", "D") for k in sa[part])
