"""A disk that fills up, or a file system that turns read-only, at a random instant of a real training run.

test_storage.py breaks chosen writes; here the run trains (a checkpoint after every step, a grid every 2
steps, the report refreshed with each grid, a metrics line every step) and the fault comes at a random
instant, so it lands in whichever write is under way:

- **disk full**: the run directory is on a real 8 MB tmpfs; at a random instant a ballast file fills it,
  leaving a random few kilobytes (so a write may fail partway);
- **read-only**: the run directory is on a real ext4 file system (a loop device, ``errors=remount-ro``),
  and at a random instant the kernel is told of a file-system error (``/sys/fs/ext4/DEV/trigger_fs_error``)
  and turns it read-only at once, open files and all, as it does when a disk fails.

Each checks that the process exits within a minute with status 2 and one line that names the problem, the
last good checkpoint and the resume command (no traceback); that the newest checkpoint the manifest names
passes its checksum and loads; and that once the space is freed (the file system repaired and mounted
read-write) ``train --resume`` goes on from it.  Both need root (mount); elsewhere they skip, saying why.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ganforge.storage import CheckpointStore, safe_load

from .conftest import cli_env, fill_disk, ganforge_cmd
from .fault_harness import run_args

pytestmark = pytest.mark.slow  # each trains real processes twice (20-60 s on 2 busy cores)

#: How long a process may take to exit after the fault (it should take a step at most).
EXIT_WITHIN = 60


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


def _mount_or_skip(*mount_args: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root (and mount)")
    done = _run("mount", *mount_args)
    if done.returncode != 0:
        pytest.skip(f"this machine does not let the test mount a file system: {done.stderr.strip()}")


@pytest.fixture
def small_tmpfs(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    _mount_or_skip("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where))
    try:
        yield where
    finally:
        _run("umount", "-l", str(where))


@pytest.fixture
def ext4_loop(tmp_path):
    """A 24 MB ext4 file system on a loop device that turns read-only on an error, and its kernel name."""
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("needs mkfs.ext4 (e2fsprogs)")
    image, where = tmp_path / "fs.img", tmp_path / "ext4"
    where.mkdir()
    with open(image, "wb") as f:
        f.truncate(24 << 20)
    assert _run("mkfs.ext4", "-q", "-F", str(image)).returncode == 0
    _mount_or_skip("-o", "loop,errors=remount-ro", str(image), str(where))
    try:
        device = _run("findmnt", "-n", "-o", "SOURCE", str(where)).stdout.strip()
        trigger = Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"
        if not trigger.exists():
            pytest.skip(f"this kernel cannot be told of an ext4 error ({trigger} is missing)")
        yield where, image, trigger
    finally:
        _run("umount", "-l", str(where))


def _start(runs: Path, images: Path) -> subprocess.Popen:
    """Training that would go on for ever, as fault_harness's run: a checkpoint every step, and so on."""
    return subprocess.Popen(ganforge_cmd("train", "--quiet", "--runs-dir", str(runs), *run_args(images, 100000)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_env())


def _wait_for_checkpoints(proc: subprocess.Popen, runs: Path, n: int = 2, timeout: float = 120) -> Path:
    """The run directory once its manifest lists ``n`` checkpoints."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        for manifest in runs.glob("*/checkpoints/manifest.json"):
            try:
                if len(json.loads(manifest.read_text())["checkpoints"]) >= n:
                    return manifest.parent.parent
            except (OSError, ValueError):
                pass
        time.sleep(0.05)
    raise AssertionError("the run did not start training")


def _wait_for_exit(proc: subprocess.Popen) -> str:
    try:
        _, err = proc.communicate(timeout=EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the run was still alive {EXIT_WITHIN} s after its disk failed: it hangs")
    return err


def _error_line(err: str, proc: subprocess.Popen) -> str:
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("ganforge train: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _good_checkpoint(run: Path) -> tuple[Path, dict]:
    """The newest checkpoint the manifest lists: it passes its SHA-256 and loads."""
    entry = json.loads((run / "checkpoints" / "manifest.json").read_text())["checkpoints"][-1]
    store = CheckpointStore(run / "checkpoints")
    assert store.verify(entry), f"{entry['file']} fails its checksum"
    assert safe_load(run / "checkpoints" / entry["file"])["progress"]["step"] == entry["step"]
    return run / "checkpoints" / entry["file"], entry


def _resume_goes_on(run: Path, step: int) -> None:
    done = _run(*ganforge_cmd("train", "--quiet", "--resume", str(run), f"train.max_steps={step + 3}"),
                env=cli_env(), timeout=180)
    assert done.returncode == 0, done.stderr
    assert _good_checkpoint(run)[1]["step"] == step + 3


@pytest.mark.parametrize("seed", [0, 1])
def test_a_disk_that_fills_up_at_a_random_instant_stops_the_run_and_keeps_its_last_checkpoint(small_tmpfs, images, seed):
    rng = random.Random(seed)
    proc = _start(small_tmpfs / "runs", images)
    run = _wait_for_checkpoints(proc, small_tmpfs / "runs")
    time.sleep(rng.uniform(0, 1.5))  # a random instant: a step, a checkpoint, the manifest, a grid, the report
    ballast = fill_disk(small_tmpfs, leave=rng.randint(0, 96) * 1024)
    err = _wait_for_exit(proc)
    line = _error_line(err, proc)
    path, entry = _good_checkpoint(run)
    assert "there is no space left to write" in line and "the disk or your quota is full" in line, line
    assert f"the last good checkpoint, {path} (step {entry['step']}), is untouched" in line
    assert line.endswith(f"then continue with: ganforge train --resume {run}")
    ballast.unlink()  # what the message says to do
    _resume_goes_on(run, entry["step"])


def test_a_file_system_that_turns_read_only_at_a_random_instant_stops_the_run_and_keeps_its_last_checkpoint(ext4_loop, images):
    where, image, trigger = ext4_loop
    rng = random.Random(0)
    proc = _start(where / "runs", images)
    run = _wait_for_checkpoints(proc, where / "runs")
    time.sleep(rng.uniform(0, 1.5))
    trigger.write_text("ganforge test: a disk error\n")  # the kernel turns the file system read-only at once
    err = _wait_for_exit(proc)
    line = _error_line(err, proc)
    # The write in flight gets EIO and every later one EROFS; which one the run meets first is the
    # kernel's race, and each has its own explanation.
    read_only = "is on a read-only file system" in line and "Remount it read-write" in line
    io_error = "reported an input/output error" in line and "Check the disk and its mount" in line
    assert read_only or io_error, line
    assert f"ganforge train --resume {run}" in line
    # What a remount finds: the file system repaired (as after any error), the last checkpoint intact.
    assert _run("umount", str(where)).returncode == 0
    assert _run("e2fsck", "-fy", str(image)).returncode in (0, 1)  # 1: errors were corrected
    assert _run("mount", "-o", "loop", str(image), str(where)).returncode == 0
    path, entry = _good_checkpoint(run)
    named = re.search(r"the last good checkpoint, .* \(step (\d+)\), is untouched", line)
    assert named, line
    if int(named.group(1)) != entry["step"]:
        # The kernel dropped the writes it had not committed when the error came (e2fsck may replay
        # less than the process saw): the message says so, and what the disk holds is older, never newer.
        assert int(named.group(1)) > entry["step"] and "A disk repaired after an error" in line, line
    _resume_goes_on(run, entry["step"])
