"""A full disk, a read-only run directory, a missing dataset: one paragraph on what happened and what to do,
and the last good checkpoint untouched.

The full disk is a real one: a 2 MB tmpfs mounted for the test (as root), filled up.  Where mounting is
not allowed, a file-size limit (RLIMIT_FSIZE) makes the same writes fail for real.
"""
from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from ganforge.cli import main

from .conftest import STEPS, cli_env, fill_disk, ganforge_cmd, manifest, one_thread, sha256, temporaries


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB file system (tmpfs), or None where this machine does not let the test mount one."""
    where = tmp_path / "disk"
    if not _mount_tmpfs(where, "2m"):
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _error_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if l.startswith("ganforge train: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_a_full_disk_stops_with_one_paragraph_and_keeps_the_last_checkpoint(reference_run, small_disk, tmp_path):
    run = (small_disk or tmp_path) / "run"
    shutil.copytree(reference_run, run)
    good = run / "checkpoints" / f"step_{STEPS:08d}.pt"
    before = (sha256(good), (run / "checkpoints" / "manifest.json").read_bytes())
    limit = None
    if small_disk is not None:
        filler = fill_disk(small_disk, leave=128 * 1024)  # room for samples and metrics, not for a checkpoint
    else:
        limit = good.stat().st_size // 2  # no file may grow past half a checkpoint

    def rlimit():
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(ganforge_cmd("train", "--resume", str(run), "--quiet", "train.epochs=3"),
                          capture_output=True, text=True, timeout=120, env=cli_env(), preexec_fn=rlimit)
    assert done.returncode == 2
    line = _error_line(done.stderr)
    # What was said: what happened, what is still good, what to do, and the command.
    written = run / "checkpoints" / f"step_{STEPS + 4:08d}.pt"
    if small_disk is not None:
        assert f"there is no space left to write {written} (No space left on device" in line
        assert f"Free some space (df -h {run} shows how much is left" in line
    else:
        assert f"{written} could not be written: it would be larger than this process may write" in line
    assert f"the last good checkpoint, {good} (step {STEPS}), is untouched" in line
    assert line.endswith(f"then continue with: ganforge train --resume {run}")
    # What was kept: the checkpoint and the manifest byte for byte, and no half-written files.
    assert (sha256(good), (run / "checkpoints" / "manifest.json").read_bytes()) == before
    assert temporaries(run / "checkpoints") == []

    if small_disk is not None:  # doing what it said works
        filler.unlink()
        with one_thread():
            assert main(["train", "--resume", str(run), "--quiet", "train.epochs=3"]) == 0
        assert manifest(run)["checkpoints"][-1]["step"] == STEPS + 4


def test_a_read_only_run_directory_says_so_and_changes_nothing(reference_run, small_disk, capsys):
    if small_disk is None:
        pytest.skip("needs a file system this test can mount read-only (root)")
    run = small_disk / "run"
    shutil.copytree(reference_run, run)
    before = {p.name: sha256(p) for p in (run / "checkpoints").iterdir()}
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)

    assert main(["train", "--resume", str(run), "--quiet", "train.epochs=3"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert f"{run} is on a read-only file system" in line
    assert f"the last good checkpoint, {run / 'checkpoints' / f'step_{STEPS:08d}.pt'} (step {STEPS}), is untouched" in line
    assert "Remount it read-write, or copy the run directory to a writable place" in line
    assert {p.name: sha256(p) for p in (run / "checkpoints").iterdir()} == before

    # A new run under a read-only place: nothing could be created, and it says where to go instead.
    assert main(["train", "--runs-dir", str(small_disk / "runs"), "--quiet", "data.source=fashion-mnist"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "read-only file system" in line and "--runs-dir" in line and "Nothing was trained or saved" in line


def test_a_missing_dataset_names_the_path_and_what_to_do(tmp_path, capsys):
    missing = tmp_path / "no-such-images"
    assert main(["train", "--runs-dir", str(tmp_path / "runs"), "--quiet", "--data", str(missing)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert str(missing) in line and "check the path" in line


def test_a_failed_write_that_names_no_file_still_says_where_and_what_is_kept(reference_run):
    # A write to an already open file (metrics.jsonl) fails with an OSError that carries no file name.
    from ganforge.storage import storage_error_message

    message = storage_error_message(OSError(errno.ENOSPC, "No space left on device"), within=reference_run)
    assert message.startswith(f"there is no space left to write a file in {reference_run} (No space left")
    assert f"step_{STEPS:08d}.pt (step {STEPS}), is untouched" in message
    assert message.endswith(f"ganforge train --resume {reference_run}")
    assert storage_error_message(OSError(errno.ENOENT, "No such file")) is None


def test_an_input_output_error_is_explained_as_the_disk_failing_and_keeps_the_resume_command(reference_run):
    # What a failing disk or a dropped network mount answers a write with; the run's folder is still
    # writable here, so the message is about the I/O error, not a read-only file system.
    from ganforge.storage import storage_error_message

    message = storage_error_message(OSError(errno.EIO, "Input/output error"), within=reference_run)
    assert message.startswith(f"the disk or file system holding a file in {reference_run} reported an "
                              "input/output error"), message
    assert "read-only" not in message
    assert f"step_{STEPS:08d}.pt (step {STEPS}), is untouched" in message
    assert message.endswith(f"ganforge train --resume {reference_run}")
