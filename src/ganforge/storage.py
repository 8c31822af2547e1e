"""Files on disk that survive a crash: atomic writes, storage errors, safe loading, the checkpoint store.

This module is part of the bottom layer (with :mod:`ganforge.config`, :mod:`ganforge.runfiles` and
:mod:`ganforge.devices`): it knows no training, so every layer may use it.  Checkpoints are written
atomically, listed with checksums in a manifest, and loaded without pickle code.

A checkpoint is a plain ``torch.save`` of tensors, numbers, strings and containers only, so it loads
with ``torch.load(..., weights_only=True)``: a file that tries to run code on load is refused.  Every
write goes to a temporary file that is flushed, fsynced and renamed into place, then recorded in
``checkpoints/manifest.json`` with its SHA-256; a kill at any moment leaves the previous checkpoint and
manifest intact.  The order of a save is what makes that true:

1. ``step_N.pt`` is written to ``.step_N.pt.tmp-PID``, fsynced, renamed (and the folder fsynced); when the
   manifest lists a ``step_N.pt`` already (or a ``best.pt`` that is being replaced), a manifest without it
   is written first;
2. the manifest that lists it is written the same way;
3. only then are the checkpoints that this manifest no longer lists (older than the last K) deleted.

A failure to write (full disk, read-only file system, no permission) raises :class:`StorageError`,
whose one-paragraph message says what happened, which checkpoint is still good, and what to do.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ganforge.runfiles import RunDir


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why and what to do."""


class UnsafeCheckpointError(CheckpointError):
    """A file that would import or run code when unpickled: refused, never loaded."""


class StorageError(CheckpointError):
    """A write into a run directory failed for a reason the user must fix (space, permissions)."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_


# ------------------------------------------------------------------------------------------------
# Writing files so that a crash never leaves half of one
# ------------------------------------------------------------------------------------------------
#: EIO is here because a file system that hits an error answers the write in flight with it (ext4's
#: errors=remount-ro answers EIO to the fsync it was in, then EROFS to every later write).
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def _is_read_only(folder: Path) -> bool:
    """Whether the file system holding ``folder`` (or its nearest existing parent) is mounted read-only now."""
    for place in (folder, *folder.parents):
        try:
            return bool(os.statvfs(place).f_flag & os.ST_RDONLY)
        except OSError:
            continue
    return False


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable.  Where directories cannot be opened or synced (Windows, some
    file systems say EINVAL) there is nothing to do; a disk that fails the sync fails the write."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno in _STORAGE_ERRNOS:
            raise
    finally:
        os.close(fd)


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


_TEMPORARY = re.compile(r"^\..+\.tmp-(\d+)$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``path`` holds either its old content or ``data``, whatever happens (a kill, a full disk)."""
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # until the folder is synced, a crash may undo the rename
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno in _STORAGE_ERRNOS:
            raise StorageError(storage_error_message(e, path), e.errno) from e
        raise


def to_bytes(state: dict) -> bytes:
    """``state`` as ``torch.save`` writes it, in memory: written atomically, or kept for a rollback."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def atomic_torch_save(path: Path, state: dict) -> None:
    """``torch.save(state, path)``, atomically."""
    atomic_write_bytes(path, to_bytes(state))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def trim_jsonl(path: Path, keep: Callable[[dict], bool]) -> int:
    """Rewrite the JSON-lines file ``path`` (atomically) without the records ``keep`` rejects and without
    lines that are not whole records (the last line of a process killed while appending it); returns how
    many lines went.  A missing file is left missing; an unchanged one is not rewritten."""
    try:
        lines = Path(path).read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if line.endswith(b"\n") and isinstance(record, dict) and keep(record):
            kept.append(line)
    if len(kept) != len(lines):
        atomic_write_bytes(Path(path), b"".join(kept))
    return len(lines) - len(kept)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# What to tell the user when the disk says no
# ------------------------------------------------------------------------------------------------
def find_run_dir(path: Path) -> Path | None:
    """The run directory (the folder with ``config.yaml``) that ``path`` is in, if any."""
    found = RunDir.containing(path)
    return found.path if found else None


def resume_command(run_dir: Path) -> str:
    return f"ganforge train --resume {shlex.quote(str(run_dir))}"


#: After an I/O error the kernel may drop writes it had not yet committed, so what this process still
#: sees can be newer than what a repaired disk holds: the resume takes the newest that passes its checksum.
_AFTER_REPAIR = ("(A disk repaired after an error may hold an earlier checkpoint than this one; resuming takes "
                 "the newest that passes its checksum.) ")


def storage_error_message(e: OSError, path: Path | str | None = None, within: Path | None = None) -> str | None:
    """One paragraph for a failed write: what happened, what is still good, what to do.

    ``path`` is the file being written (else ``e.filename``); ``within`` the folder it was in, for errors
    that name no file (a write to an open file).  ``None`` for errors that are not about the storage
    (those keep their own message).
    """
    if e.errno not in _STORAGE_ERRNOS:
        return None
    name = path or e.filename
    if name is None:
        path = Path(within or ".")
        folder = path
        path_text = f"a file in {within}" if within else "a file"
    else:
        path = Path(name)
        if _TEMPORARY.match(path.name):  # name the file being written, not its temporary twin
            path = path.with_name(path.name[1:].rsplit(".tmp-", 1)[0])
        folder, path_text = path.parent, None
    run_dir = find_run_dir(folder)
    where = run_dir or folder
    path = path_text or path
    read_only = e.errno == errno.EROFS or (e.errno == errno.EIO and _is_read_only(Path(where)))
    after_repair = _AFTER_REPAIR if read_only or e.errno == errno.EIO else ""  # only where a checkpoint is named
    if e.errno == errno.EFBIG:
        what = (f"{path} could not be written: it would be larger than this process may write "
                f"({os.strerror(e.errno)}: a file-size limit, see ulimit -f, or the file system's largest file)")
        fix = "Raise the limit (ulimit -f unlimited) or use a file system that takes larger files"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"there is no space left to write {path} ({os.strerror(e.errno)}: the disk or your quota is full)"
        fix = f"Free some space (df -h {shlex.quote(str(where))} shows how much is left; old runs can go)"
    elif read_only:
        what = f"{path} cannot be written: {where} is on a read-only file system"
        if e.errno == errno.EIO:
            what += " (it turned read-only after an input/output error: dmesg shows what the kernel saw)"
        fix = "Remount it read-write, or copy the run directory to a writable place (and resume the copy)"
    elif e.errno == errno.EIO:
        what = (f"the disk or file system holding {path} reported an input/output error ({os.strerror(e.errno)}: "
                "a failing disk, or a network mount that dropped; dmesg shows what the kernel saw)")
        fix = "Check the disk and its mount, or copy the run directory to a healthy disk (and resume the copy)"
    else:
        what = f"{path} cannot be written: no permission ({os.strerror(e.errno)})"
        fix = (f"Give your user write access to {where} (chown/chmod), or copy the run directory to a writable "
               "place (and resume the copy)")
    if run_dir is None:
        fix = fix.split(", or copy the run directory")[0]  # there is no run directory to copy
        return (f"{what}. Nothing was trained or saved there. {fix}, or write somewhere else (for training, "
                "choose the place of run directories with --runs-dir), then start again.")
    found = CheckpointStore(RunDir(run_dir).checkpoints).latest_valid(warn=lambda *_: None)
    if found is None:
        return f"{what}. Training stopped before any checkpoint was saved. {fix}, then start the run again."
    return (f"{what}. Training stopped; files already saved were not changed: the last good checkpoint, "
            f"{found[0]} (step {found[1]['step']}), is untouched. {after_repair}{fix}, then continue with: "
            f"{resume_command(run_dir)}")


# ------------------------------------------------------------------------------------------------
# Loading without running code
# ------------------------------------------------------------------------------------------------
def _refusal_reason(msg: str) -> str | None:
    """What a weights-only refusal was about, in plain words, or None if it was no refusal."""
    m = re.search(r"unsupported GLOBAL ([\w.]+)", msg, re.IGNORECASE) or re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
    if m:
        return f"it asks to import {m.group(1)} while loading, which would run code"
    if "Weights only load failed" in msg or "weights_only" in msg.lower():
        line = next((l.strip() for l in msg.splitlines() if "Unsupported" in l or "unsupported" in l), "")
        return "it is a pickle that is not plain data" + (f" ({line[:120]})" if line else "")
    return None


def safe_load(path: Path, map_location: Any = "cpu") -> dict:
    """Load a checkpoint without executing code: anything but tensors and plain data is refused."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch's note on odd pickle protocols: the refusal below says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        msg = str(e)
        reason = _refusal_reason(msg)
        if reason is not None:
            raise UnsafeCheckpointError(
                f"{path} was refused: {reason}. ganforge loads checkpoints with torch.load(weights_only=True) "
                "and never runs code from a file. Nothing from it was loaded or executed. If it came from "
                "someone else, do not open it with other tools either; to share a generator, use "
                "'ganforge export RUN out/' (safetensors and JSON, no code)."
            ) from None
        first = msg.strip().splitlines()[0][:300] if msg.strip() else type(e).__name__
        raise CheckpointError(f"{path} could not be read as a checkpoint (it is truncated or damaged: {first}); "
                              "use an earlier checkpoint of the run") from None


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# The checkpoints/ folder of a run
# ------------------------------------------------------------------------------------------------
class CheckpointStore:
    """The ``checkpoints/`` folder of a run: step checkpoints, the best one, and the manifest."""

    def __init__(self, folder: Path, keep: int = 3):
        self.folder = Path(folder)
        self.keep = keep
        self.manifest_path = self.folder / RunDir.MANIFEST
        self._cleaned = False

    # -------------------------------------------------------------- the manifest
    def _read_manifest(self) -> dict | None:
        """The manifest, or None when it is missing or unreadable."""
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), list):
            return None
        data.setdefault("best", None)
        return data

    def manifest(self) -> dict:
        return self._read_manifest() or {"checkpoints": [], "best": None}

    def _write_manifest(self, manifest: dict) -> None:
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2))

    # -------------------------------------------------------------- saving
    def save(self, state: dict, step: int, best: bool = False, metric: float | None = None) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        name = f"step_{step:08d}.pt"
        path = self.folder / name
        data = to_bytes(state)
        manifest = self.manifest()
        # Saving a step the manifest lists already (an epoch's end right after a mid-epoch save of the same
        # step) replaces its file: unlist it first, so that at no instant does the manifest name bytes that
        # are not on disk (a kill between the two writes would leave a listed checkpoint failing its checksum).
        replaced = [c for c in manifest["checkpoints"] if c["file"] == name]
        if best and manifest.get("best"):
            replaced.append(manifest["best"])
            manifest["best"] = None
        if replaced:
            manifest["checkpoints"] = [c for c in manifest["checkpoints"] if c["file"] != name]
            self._write_manifest(manifest)
        atomic_write_bytes(path, data)
        entry = {"file": name, "step": step, "epoch": state.get("epoch"), "sha256": hashlib.sha256(data).hexdigest(),
                 "bytes": len(data)}
        entries = [c for c in manifest["checkpoints"] if c["file"] != name] + [entry]
        # Beyond the last K: forgotten by this manifest, deleted only once it is on disk.
        drop = entries[:-self.keep] if self.keep > 0 else []
        manifest["checkpoints"] = entries[len(drop):]
        if best:
            atomic_write_bytes(self.folder / RunDir.BEST, data)
            manifest["best"] = dict(entry, file=RunDir.BEST, metric=metric)
        self._write_manifest(manifest)
        for c in drop:
            (self.folder / c["file"]).unlink(missing_ok=True)
        return path

    def _remove_stale_temporaries(self) -> None:
        """Half-written files of a process that was killed mid-write (never of a live one)."""
        if self._cleaned:
            return
        self._cleaned = True
        remove_stale_temporaries(self.folder)

    # -------------------------------------------------------------- finding a good one
    def verify(self, entry: dict) -> bool:
        path = self.folder / entry["file"]
        return path.is_file() and sha256_file(path) == entry["sha256"]

    def candidates(self, warn: Callable[[str], Any] = _warn) -> Iterator[tuple[Path, dict]]:
        """Checkpoints worth loading, newest first: those passing their checksum; broken ones are reported.

        Without a readable manifest (deleted, or written by hand), the ``step_*.pt`` files are offered by
        step number, newest first, with a warning: they have no checksum to check, so loading them is the
        test (a truncated file fails to load).
        """
        manifest = self._read_manifest()
        if manifest is None:
            files = sorted(self.folder.glob("step_*.pt"), reverse=True) if self.folder.is_dir() else []
            if files:
                warn(f"warning: {self.manifest_path} is missing or unreadable; trying the checkpoint files by "
                     "step number, newest first, without checksums")
            for p in files:
                m = re.match(r"step_(\d+)\.pt$", p.name)
                if m:
                    yield p, {"file": p.name, "step": int(m.group(1)), "sha256": None}
            return
        for entry in reversed(manifest["checkpoints"]):
            if self.verify(entry):
                yield self.folder / entry["file"], entry
            else:
                warn(f"warning: checkpoint {self.folder / entry['file']} is missing or fails its checksum; "
                     "using the one before it")

    def latest_valid(self, warn: Callable[[str], Any] = _warn) -> tuple[Path, dict] | None:
        """The newest checkpoint whose checksum matches; broken ones are reported and skipped."""
        for path, entry in self.candidates(warn):
            if entry["sha256"] is None:  # no manifest: the file must at least load
                try:
                    safe_load(path)
                except UnsafeCheckpointError:
                    raise
                except CheckpointError as e:
                    warn(f"warning: {e}; using the one before it")
                    continue
            return path, entry
        return None


def remove_stale_temporaries(folder: Path, recursive: bool = False) -> int:
    """Remove the temporary twins (``.NAME.tmp-PID``) that processes killed mid-write left in ``folder``
    (and its subfolders, ``recursive``), never those of a live process; returns how many went."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in folder.rglob(".*.tmp-*") if recursive else folder.iterdir():
        m = _TEMPORARY.match(p.name)
        if m and p.is_file() and not _pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------------------------
# The run lock: one writer per run directory
# ------------------------------------------------------------------------------------------------
class RunInUseError(CheckpointError):
    """Another live process writes this run (it holds the run's lock); the message names it."""


#: errnos with which a file system says it does not do locks (some network mounts): warn and go on.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
#: The byte that the Windows lock covers (far past the holder's note, which others must be able to read).
_WINDOWS_LOCK_OFFSET = 1 << 30
#: Run directories this process holds, by resolved path: {path: [fd, depth]}.
_HELD: dict[str, list[int]] = {}


def _forget_held_locks_in_child() -> None:
    """A forked child (a data-loader worker) must not keep its parent's lock alive after the parent dies:
    it closes its copies of the lock files (the lock stays the parent's while the parent has them open)."""
    for fd, _ in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_held_locks_in_child)


def _lock_fd(fd: int) -> bool | None:
    """Take an exclusive lock on ``fd`` without waiting: True when taken, False when another process holds
    it, None when this file system does not support locks."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        try:
            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EDEADLK):
                return False
            if e.errno in _NO_LOCKS:
                return None
            raise
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in _NO_LOCKS:
            return None
        raise


def lock_holder(run_dir: Path, wait: float = 0.5) -> dict:
    """What the holder of ``run_dir``'s lock wrote about itself (pid, host, command, since); ``{}`` when it
    has not written it yet (it does so right after locking: this waits up to ``wait`` seconds for it)."""
    path = RunDir(run_dir).lock
    deadline = time.monotonic() + wait
    while True:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "pid" in data:
                return data
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return {}
        time.sleep(0.02)


def _in_use_message(run_dir: Path, holder: dict, command: str, hint: str) -> str:
    if holder:
        who = (f"`ganforge {holder.get('command', '?')}` (PID {holder['pid']} on host {holder.get('host', '?')}, "
               f"since {holder.get('since', '?')})")
        stop = f"kill -TERM {holder['pid']} on {holder.get('host', 'its host')} stops it cleanly, saving a checkpoint"
    else:
        who, stop = "another process (it has not yet said which)", "stop it with SIGTERM, which saves a checkpoint"
    return (f"run {run_dir} is in use: {who} is writing it and holds its lock ({RunDir(run_dir).lock}), so "
            f"`ganforge {command}` did not start (two writers would mix their checkpoints and metrics); nothing was "
            f"written. Wait for it to finish ({stop}), then run this again{hint}. Reading the run meanwhile is safe: "
            "`ganforge sample`, `runs`, `export` and `eval --out FILE` need no lock.")


class RunLock:
    """An exclusive OS lock on ``RUN/run.lock`` that a process holds while it writes the run.

    ``fcntl.flock`` (``msvcrt.locking`` on Windows): the kernel releases it when the process dies, however
    it dies, so nothing stale is left behind by a SIGKILL.  A second writer is refused at once with
    :class:`RunInUseError`, which names the holder (its PID, host, command and start time, written into
    the lock file once locked).  Where the file system does not support locks (some network mounts), a
    warning says so and the run goes on unprotected.  Taken twice in one process (a command that trains
    and then reports), it is held until the outer release.  Use as a context manager.
    """

    def __init__(self, run_dir: str | Path, command: str, hint: str = "", warn: Callable[[str], Any] = _warn):
        self.run_dir = Path(run_dir)
        self.command, self.hint, self.warn = command, hint, warn
        self._key: str | None = None

    def acquire(self) -> "RunLock":
        import socket

        key = os.path.realpath(self.run_dir)
        if key in _HELD:  # this process holds it already
            _HELD[key][1] += 1
            self._key = key
            return self
        path = RunDir(self.run_dir).lock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            message = storage_error_message(e, path)
            if message is None:
                raise
            raise StorageError(message, e.errno) from e
        try:
            taken = _lock_fd(fd)
        except BaseException:
            os.close(fd)
            raise
        if taken is False:
            os.close(fd)
            raise RunInUseError(_in_use_message(self.run_dir, lock_holder(self.run_dir), self.command, self.hint))
        if taken is None:
            self.warn(f"warning: the file system of {self.run_dir} does not support file locks, so nothing stops "
                      "a second process from writing this run at the same time: run one writer at a time")
        note = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                           "since": time.strftime("%Y-%m-%d %H:%M:%S %z")})
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, note.encode("utf-8") + b"\n")
        except OSError:  # the note only helps the message of a refused writer; the lock is what counts
            pass
        _HELD[key] = [fd, 1]
        self._key = key
        return self

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None or key not in _HELD:
            return
        _HELD[key][1] -= 1
        if _HELD[key][1] > 0:
            return
        fd, _ = _HELD.pop(key)
        try:
            os.ftruncate(fd, 0)  # the note is no longer true (a killed holder leaves it: the lock is what counts)
        except OSError:
            pass
        os.close(fd)  # closing the last descriptor releases the lock; the empty file stays

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
