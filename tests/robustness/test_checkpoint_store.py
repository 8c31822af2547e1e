"""The checkpoints/ folder: the last K and the best are kept, every file is listed with its checksum."""
from __future__ import annotations

import hashlib

import torch

from ganforge.storage import CheckpointStore, safe_load


def test_keeps_the_last_k_and_the_best(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints", keep=2)
    for step in range(1, 6):
        store.save({"w": torch.full((4,), float(step)), "epoch": 0}, step, best=step == 2, metric=1.0 / step)
    files = sorted(p.name for p in store.folder.iterdir())
    assert files == ["best.pt", "manifest.json", "step_00000004.pt", "step_00000005.pt"]
    manifest = store.manifest()
    assert [c["step"] for c in manifest["checkpoints"]] == [4, 5]
    assert manifest["best"]["step"] == 2 and manifest["best"]["metric"] == 0.5
    assert torch.equal(safe_load(store.folder / "best.pt")["w"], torch.full((4,), 2.0))
    for entry in manifest["checkpoints"] + [manifest["best"]]:
        assert hashlib.sha256((store.folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]


def test_keep_zero_keeps_every_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints", keep=0)
    for step in range(1, 5):
        store.save({"w": torch.zeros(1), "epoch": 0}, step)
    assert [c["step"] for c in store.manifest()["checkpoints"]] == [1, 2, 3, 4]
    assert len(list(store.folder.glob("step_*.pt"))) == 4


def test_saving_a_listed_step_again_never_leaves_the_manifest_naming_other_bytes(tmp_path):
    # An epoch's end right after a mid-epoch save of the same step writes step_N.pt again (other bytes: the
    # epoch moved on).  If the process dies after the new file is in place but before the manifest naming it
    # is, the manifest must not list step_N.pt with the old checksum (found by benchmarks/robustness_faults.py).
    import os

    import pytest

    store = CheckpointStore(tmp_path / "checkpoints")
    store.save({"w": torch.zeros(3), "epoch": 0}, 3)
    store.save({"w": torch.zeros(3), "epoch": 0}, 4, best=True, metric=1.0)
    # From now on the manifest cannot be written, as when the process dies before writing it.
    (store.folder / f".manifest.json.tmp-{os.getpid()}").mkdir()
    with pytest.raises(OSError):
        store.save({"w": torch.ones(3), "epoch": 1}, 4, best=True, metric=0.5)
    manifest = store.manifest()
    for entry in manifest["checkpoints"] + ([manifest["best"]] if manifest["best"] else []):
        assert store.verify(entry), f"{entry['file']} is listed but fails its checksum"
    assert store.latest_valid(warn=pytest.fail)[1]["step"] in (3, 4)
