"""Fault injection at random instants: SIGKILL a real training process, check what it left, resume, repeat.

Used by tests/robustness/test_faults.py (a few cycles) and benchmarks/robustness_faults.py (50 or more).
The run checkpoints every step (``train.midsave_steps=1``), logs every step, writes a sample grid every
2 steps and refreshes its report at every epoch end and every grid.  Two kinds of kill are mixed:

- *random*: at a random instant 0.2 s to ``max_delay`` s after the process took the run's lock; such a
  kill mostly lands inside a step, because a tiny model's writes last milliseconds;
- *aimed* at one write window (a checkpoint write, the manifest update, a report refresh): the harness
  watches the run directory (inotify on Linux, else a 1 ms poll of its listings) for the temporary file
  that exists only while that write is under way (``.step_N.pt.tmp-PID``, ``.manifest.json.tmp-PID``,
  ``.report.html.tmp-PID``), lets a random number of such windows pass (measuring how long they last),
  and at the next one sends SIGKILL after a random delay drawn within the window's measured length.

A kill counts as *inside* a window when the killed process's temporary file of that write is still there
after it died (it was killed between creating and renaming it), whichever kind of kill it was.
After every kill:

- the newest checkpoint the manifest names passes its SHA-256 and loads (``weights_only``);
- ``metrics.jsonl`` holds each step at most once and none is missing (a resume forgets the lines
  written after its checkpoint), and the kill lost at most one save interval;
- the next ``train --resume`` starts (it is the next cycle).

At the end the run is resumed to its last step and compared bit for bit with an uninterrupted run.
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import re
import select
import statistics
import struct
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
    kills_aimed: int = 0  # kills aimed at a write window (the rest came at random instants)
    kills_in_checkpoint_write: int = 0  # the killed process's .step_N.pt.tmp-PID (or best.pt's) was left
    kills_in_manifest_update: int = 0  # ... its .manifest.json.tmp-PID
    kills_in_report_refresh: int = 0  # ... its .report.html.tmp-PID or .curves.png.tmp-PID
    window_ms: dict = field(default_factory=dict)  # each window's median length, as the harness saw it
    stale_temporaries: int = 0  # temporary files of killed processes still in the run at the end
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
    corrupt = [w for w in warnings if "fails its checksum" in w]
    counts.corrupt_checkpoints += len(corrupt)
    counts.notes += corrupt
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


#: The write windows an aimed kill lands in: the temporary file that exists only while each is written
#: (storage.atomic_write_bytes: created, written, fsynced, renamed), and the folder it is in.
WINDOWS = {
    "checkpoint_write": ("checkpoints", re.compile(r"^\.(step_\d+|best)\.pt\.tmp-(\d+)$")),
    "manifest_update": ("checkpoints", re.compile(r"^\.manifest\.json\.tmp-(\d+)$")),
    "report_refresh": (".", re.compile(r"^\.(report\.html|curves\.png)\.tmp-(\d+)$")),
}
#: How a cycle's kill is chosen: at random, or aimed at one of the windows.
MODES = ("random", *WINDOWS)


def windows_left_by(run: Path, pid: int) -> set[str]:
    """The windows the (dead) process ``pid`` was inside: those whose temporary file it left behind."""
    inside = set()
    for window, (folder, pattern) in WINDOWS.items():
        where = run / folder
        if where.is_dir():
            for p in where.iterdir():
                m = pattern.match(p.name)
                if m and int(m.groups()[-1]) == pid:
                    inside.add(window)
    return inside


def stale_temporaries(run: Path) -> list[Path]:
    return [p for p in run.rglob(".*.tmp-*") if p.is_file()]


class FolderWatch:
    """The names created in a run's folder and its ``checkpoints/``: inotify on Linux (no delay between the
    file's creation and the harness hearing of it), else a poll of both listings every millisecond."""

    IN_CREATE = 0x100

    def __init__(self, run: Path):
        self.folders = [run, run / "checkpoints"]
        self.fd, self.watched, self.listed = None, {}, {}
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd >= 0:
                self.fd, self.libc = fd, libc
        except (OSError, AttributeError):
            pass
        self._watch_new_folders()

    def _watch_new_folders(self) -> None:
        for folder in self.folders:
            if folder in self.watched.values() or folder in self.listed or not folder.is_dir():
                continue
            if self.fd is not None:
                wd = self.libc.inotify_add_watch(self.fd, str(folder).encode(), self.IN_CREATE)
                if wd >= 0:
                    self.watched[wd] = folder
                    continue
            self.listed[folder] = set(os.listdir(folder))

    def created(self, timeout: float) -> list[Path]:
        """Files created since the last call, waiting up to ``timeout`` seconds for one."""
        self._watch_new_folders()
        if self.fd is not None and not self.listed:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            out = []
            if ready:
                data = os.read(self.fd, 1 << 16)
                i = 0
                while i < len(data):
                    wd, _mask, _cookie, size = struct.unpack_from("iIII", data, i)
                    name = data[i + 16:i + 16 + size].rstrip(b"\0").decode(errors="replace")
                    out.append(self.watched[wd] / name)
                    i += 16 + size
            return out
        deadline = time.monotonic() + timeout
        while True:
            out = []
            for folder, before in self.listed.items():
                try:
                    now = set(os.listdir(folder))
                except OSError:
                    continue
                out += [folder / n for n in now - before]
                self.listed[folder] = now
            if out or time.monotonic() >= deadline:
                return out
            time.sleep(0.001)
            self._watch_new_folders()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def _lifetime(path: Path, limit: float = 1.0) -> float:
    """Seconds until ``path`` is gone (renamed into place), from now; polled every 0.2 ms."""
    t0 = time.perf_counter()
    while path.exists() and time.perf_counter() - t0 < limit:
        time.sleep(0.0002)
    return time.perf_counter() - t0


def aimed_kill(proc: subprocess.Popen, run: Path, window: str, rng: random.Random, lifetimes: dict,
               timeout: float) -> bool:
    """SIGKILL ``proc`` at a random instant inside one of its ``window`` writes: let 0-2 such windows pass
    (timing them), then, as the next one's temporary file appears, wait a random fraction of the
    windows' median length and kill.  False when no such window came within ``timeout`` seconds (the
    process is then left running)."""
    folder_name, pattern = WINDOWS[window]
    watch = FolderWatch(run)
    skip = rng.randint(0, 2)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for path in watch.created(min(0.05, max(deadline - time.monotonic(), 0))):
                m = pattern.match(path.name)
                if not m or int(m.groups()[-1]) != proc.pid or path.parent.name != (
                        run.name if folder_name == "." else folder_name):
                    continue
                if skip > 0 or not lifetimes.get(window):
                    skip -= 1
                    lifetimes.setdefault(window, []).append(_lifetime(path))
                    continue
                time.sleep(rng.uniform(0, statistics.median(lifetimes[window][-20:])))
                proc.send_signal(signal.SIGKILL)
                return True
    finally:
        watch.close()
    return False


def kill_and_resume(images: Path, runs: Path, cycles: int, epochs: int, seed: int = 0,
                    max_delay: float = 2.0, log=print, modes: tuple[str, ...] = MODES,
                    aim_every_cycle: bool = False) -> tuple[Path, Counts]:
    """``cycles`` SIGKILLs of one run (the first a new run, then ``--resume``), then a last resume to the
    end; returns the run and the counts.  Each kill's mode (``random`` or aimed at a window) is drawn from
    :data:`MODES`, or with ``aim_every_cycle`` taken from ``modes`` in turn."""
    rng = random.Random(seed)
    counts = Counts()
    lifetimes: dict[str, list[float]] = {}  # each window's measured lengths, in seconds
    run = None
    for cycle in range(cycles):
        args = (["train", "--quiet", "--runs-dir", str(runs), *run_args(images, epochs)] if run is None
                else ["train", "--quiet", "--resume", str(run)])
        proc = subprocess.Popen(cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
        counts.resumes += run is not None
        resumed = run is not None
        run = _started(runs, proc)
        before = check_run(run, Counts())
        mode = modes[cycle % len(modes)] if aim_every_cycle else rng.choice(modes)
        aimed = mode != "random" and aimed_kill(proc, run, mode, rng, lifetimes, timeout=120)
        if not aimed:
            time.sleep(rng.uniform(0.2, max_delay))  # a random instant of the run: a step, a save, a report
        if proc.poll() is not None:  # it finished first: the run is complete
            if proc.returncode != 0 and proc.returncode != -signal.SIGKILL:
                raise RuntimeError(f"cycle {cycle}: the run failed: {proc.stderr.read()}")
            if proc.returncode == 0:
                counts.resumes_ok += resumed
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        counts.cycles += 1
        counts.kills_aimed += aimed
        counts.resumes_ok += resumed  # it had resumed and was training when killed
        inside = windows_left_by(run, proc.pid)
        for window in inside:
            setattr(counts, f"kills_in_{window}", getattr(counts, f"kills_in_{window}") + 1)
        after = check_run(run, counts)
        counts.kills_with_no_new_checkpoint += after == before
        log(f"cycle {cycle + 1}: {'aimed at ' + mode.replace('_', ' ') if aimed else 'random'} kill, "
            f"checkpoint step {after}, inside: {', '.join(sorted(inside)) or 'no write'}")
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
    counts.window_ms = {w: round(statistics.median(t) * 1000, 2) for w, t in lifetimes.items()}
    counts.stale_temporaries = len(stale_temporaries(run))
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
