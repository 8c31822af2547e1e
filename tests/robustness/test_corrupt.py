"""Damaged and malicious checkpoints: the damaged one is reported and skipped, the malicious one refused."""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil

import pytest
import torch

from ganforge.cli import main
from ganforge.storage import CheckpointStore, UnsafeCheckpointError, safe_load

from .conftest import assert_bitwise_equal, manifest, one_thread, sha256


def test_a_corrupted_latest_checkpoint_falls_back_to_the_previous_one(damaged_copy, reference_run, capsys):
    run = damaged_copy()
    latest = run / "checkpoints" / "step_00000008.pt"
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle: the zip still opens, the checksum fails
    latest.write_bytes(bytes(data))
    kept = sha256(run / "checkpoints" / "step_00000004.pt")

    with one_thread():
        assert main(["train", "--resume", str(run), "--quiet", "train.epochs=3"]) == 0
    err = capsys.readouterr().err
    assert f"warning: checkpoint {latest} is missing or fails its checksum; using the one before it" in err
    # Training went on from step 4 (untouched) through step 12; the new step 8 is the one the
    # uninterrupted run wrote, bit for bit.
    assert [c["file"] for c in manifest(run)["checkpoints"]] == ["step_00000004.pt", "step_00000008.pt",
                                                                  "step_00000012.pt"]
    assert sha256(run / "checkpoints" / "step_00000004.pt") == kept
    assert_bitwise_equal(latest, reference_run / "checkpoints" / "step_00000008.pt")


def test_a_missing_manifest_falls_back_to_the_files_by_name(damaged_copy):
    run = damaged_copy()
    (run / "checkpoints" / "manifest.json").unlink()
    (run / "checkpoints" / "step_00000008.pt").write_bytes(b"PK\x03\x04 truncated")
    warnings: list[str] = []
    path, entry = CheckpointStore(run / "checkpoints").latest_valid(warn=warnings.append)
    assert path.name == "step_00000004.pt" and entry["step"] == 4
    assert "manifest.json is missing or unreadable" in warnings[0]
    assert "step_00000008.pt could not be read as a checkpoint" in warnings[1]


class _RunsCode:
    """Unpickling this runs a shell command that writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious_files(tmp_path):
    marker = tmp_path / "MARKER"
    plain = tmp_path / "plain_pickle.pt"
    plain.write_bytes(pickle.dumps({"G": _RunsCode(marker)}))
    buf = io.BytesIO()
    torch.save({"config": {}, "G": _RunsCode(marker)}, buf)
    zipped = tmp_path / "torch_format.pt"
    zipped.write_bytes(buf.getvalue())
    return marker, plain, zipped


def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path, capsys):
    marker, plain, zipped = _malicious_files(tmp_path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        safe_load(plain)
    with pytest.raises(UnsafeCheckpointError, match="import posix.system"):
        safe_load(zipped)
    # Through the command line, as a user sampling from a downloaded file would.
    assert main(["sample", str(zipped), "--out", str(tmp_path / "grid.png")]) == 2
    err = capsys.readouterr().err
    assert f"error: {zipped} was refused: it asks to import posix.system while loading, which would run code" in err
    assert "never runs code from a file" in err and "weights_only=False" not in err
    assert not marker.exists() and not (tmp_path / "grid.png").exists()


def test_a_malicious_checkpoint_with_a_matching_checksum_is_refused_on_resume(damaged_copy, tmp_path, capsys):
    # Someone swapped the latest checkpoint and fixed up the manifest: the checksum passes, loading must not.
    run = damaged_copy()
    marker, _, zipped = _malicious_files(tmp_path)
    latest = run / "checkpoints" / "step_00000008.pt"
    shutil.copy(zipped, latest)
    m = manifest(run)
    m["checkpoints"][-1]["sha256"] = sha256(latest)
    (run / "checkpoints" / "manifest.json").write_text(json.dumps(m))

    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{latest} was refused" in err and "Nothing from it was loaded or executed" in err
    assert not marker.exists()


def test_no_code_in_ganforge_unpickles_freely():
    # Every torch.load in the package says weights_only=True; nothing calls pickle.load(s) or np.load with
    # allow_pickle=True.  A new loader that forgets it fails here, before it ships.
    import ast
    from pathlib import Path

    import ganforge

    offenders, loads = [], 0
    for path in Path(ganforge.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            kwargs = {k.arg: k.value for k in node.keywords}
            where = f"{path.name}:{node.lineno}"
            if (owner, node.func.attr) == ("torch", "load"):
                loads += 1
                flag = kwargs.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    offenders.append(f"{where} torch.load without weights_only=True")
            elif owner == "pickle" and node.func.attr in ("load", "loads"):
                offenders.append(f"{where} pickle.{node.func.attr}")
            elif (owner, node.func.attr) == ("np", "load"):
                flag = kwargs.get("allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    offenders.append(f"{where} np.load with allow_pickle")
    assert not offenders, offenders
    assert loads >= 2  # checkpoint.safe_load and the guard's rollback at least: the scan sees them
