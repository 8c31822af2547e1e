"""Checkpoints on disk: written atomically, listed with checksums in a manifest, loaded without pickle code.

A checkpoint is a plain ``torch.save`` of tensors, numbers, strings and containers only, so it loads
with ``torch.load(..., weights_only=True)``: a file that tries to run code on load is refused.  Every
write goes to a temporary file that is flushed, fsynced and renamed into place, then recorded in
``checkpoints/manifest.json`` with its SHA-256; a kill at any moment leaves the previous checkpoint and
manifest intact.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_load(path: Path, map_location: Any = "cpu") -> dict:
    """Load a checkpoint without executing code: anything but tensors and plain data is refused."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001
        msg = str(e)
        if "weights_only" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
            raise CheckpointError(
                f"{path} is not a plain-data checkpoint: it asks to run or import code on load "
                f"({msg.splitlines()[0][:200]}). ganforge refuses such files. If you trust it and it came "
                "from an older tool, re-save its tensors with that tool, or use a safetensors export."
            ) from None
        raise CheckpointError(f"{path} could not be read as a checkpoint: {msg.splitlines()[0][:300]}") from None


class CheckpointStore:
    """The ``checkpoints/`` folder of a run: step checkpoints, the best one, and the manifest."""

    def __init__(self, folder: Path, keep: int = 3):
        self.folder = Path(folder)
        self.keep = keep
        self.manifest_path = self.folder / "manifest.json"

    def manifest(self) -> dict:
        if not self.manifest_path.is_file():
            return {"checkpoints": [], "best": None}
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {"checkpoints": [], "best": None}

    def _write_manifest(self, manifest: dict) -> None:
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2))

    def save(self, state: dict, step: int, best: bool = False, metric: float | None = None) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:08d}.pt"
        path = self.folder / name
        import io
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(path, buf.getvalue())
        entry = {"file": name, "step": step, "epoch": state.get("epoch"), "sha256": sha256_file(path)}
        manifest = self.manifest()
        manifest["checkpoints"] = [c for c in manifest["checkpoints"] if c["file"] != name] + [entry]
        if best:
            best_path = self.folder / "best.pt"
            atomic_write_bytes(best_path, buf.getvalue())
            manifest["best"] = dict(entry, file="best.pt", metric=metric)
        self._write_manifest(manifest)
        self._prune(manifest)
        return path

    def _prune(self, manifest: dict) -> None:
        if self.keep <= 0:
            return
        entries = manifest["checkpoints"]
        drop, keep = entries[:-self.keep], entries[-self.keep:]
        if not drop:
            return
        manifest["checkpoints"] = keep
        self._write_manifest(manifest)  # the manifest forgets a file before the file goes
        for c in drop:
            (self.folder / c["file"]).unlink(missing_ok=True)

    def verify(self, entry: dict) -> bool:
        path = self.folder / entry["file"]
        return path.is_file() and sha256_file(path) == entry["sha256"]

    def latest_valid(self, warn=print) -> tuple[Path, dict] | None:
        """The newest checkpoint whose checksum matches; broken ones are reported and skipped."""
        for entry in reversed(self.manifest()["checkpoints"]):
            if self.verify(entry):
                return self.folder / entry["file"], entry
            warn(f"warning: checkpoint {self.folder / entry['file']} is missing or fails its checksum; "
                 "using the one before it")
        return None
