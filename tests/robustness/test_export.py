"""ganforge export RUN out/: safetensors + JSON that ganforge sample takes, with the same images as the run."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ganforge.cli import main
from ganforge.config import ConfigError
from ganforge.sampling import generate, load_generator
from ganforge.storage import CheckpointError

from .conftest import STEPS


def test_export_then_sample_gives_the_runs_images(reference_run, tmp_path, capsys):
    out = tmp_path / "shared"
    assert main(["export", str(reference_run), str(out)]) == 0
    assert f"sample from it with: ganforge sample {out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generator.safetensors"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == "ganforge-export-1" and meta["architecture"]["nz"] == 16
    assert meta["config"]["model"]["ngf"] == 8

    # The exported tensors are the run's final generator, exactly.
    final = torch.load(reference_run / "generator.pt", weights_only=True)["G"]
    tensors = load_file(out / "generator.safetensors")
    assert tensors.keys() == final.keys() and all(torch.equal(tensors[k], final[k]) for k in final)

    # ganforge sample accepts the folder, and draws the same images as from the run itself.
    assert main(["sample", str(out), "--n", "8", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    G_run, _, _ = load_generator(reference_run)
    G_export, cfg, _ = load_generator(out)
    assert cfg.model.nz == 16
    assert torch.equal(generate(G_run, z), generate(G_export, z))


def test_export_refuses_to_overwrite_and_checks_what_it_loads(reference_run, tmp_path, capsys):
    out = tmp_path / "shared"
    assert main(["export", str(reference_run), str(out), "--which", "latest"]) == 0
    latest = torch.load(reference_run / f"checkpoints/step_{STEPS:08d}.pt", weights_only=True)["G"]
    assert all(torch.equal(load_file(out / "generator.safetensors")[k], v) for k, v in latest.items())
    assert main(["export", str(reference_run), str(out)]) == 2
    assert "already holds an export" in capsys.readouterr().err
    assert main(["export", str(reference_run), str(out), "--force"]) == 0

    weights = out / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_generator(out)
    (out / "config.json").unlink()
    with pytest.raises(ConfigError, match="no config.json"):
        load_generator(out)
