"""Weights saved with one architecture refuse to load into another, with a message saying what differs."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

import ganforge
from ganforge.api import resume
from ganforge.cli import main
from ganforge.sampling import load_generator
from ganforge.storage import CheckpointError, safe_load
from ganforge.training.trainer import Trainer


@pytest.fixture
def dcgan_run(tmp_path, image_folder, tiny):
    """A real two-step DCGAN run on real images: checkpoints and generator.pt on disk."""
    return ganforge.train(tiny(image_folder, "train.max_steps=2"), runs_dir=tmp_path / "runs", log_format="quiet")


def test_checkpoint_refuses_to_load_into_another_architecture(dcgan_run, tiny, image_folder):
    state = safe_load(sorted((dcgan_run / "checkpoints").glob("step_*.pt"))[-1])
    assert state["architecture"]["model"] == "dcgan"
    other = Trainer(tiny(image_folder, "model.name=resnet"), dcgan_run / "elsewhere", log_format="quiet")
    with pytest.raises(CheckpointError, match=r"(?s)different architecture.*model: saved 'dcgan', now 'resnet'"):
        other.load_state_dict(state)
    wider = Trainer(tiny(image_folder, "model.ngf=16"), dcgan_run / "elsewhere", log_format="quiet")
    with pytest.raises(CheckpointError, match="ngf: saved 8, now 16"):
        wider.load_state_dict(state)
    same = Trainer(tiny(image_folder), dcgan_run / "elsewhere", log_format="quiet")
    same.load_state_dict(state)  # the architecture it was saved with loads
    assert torch.equal(same.G.main[0].weight, state["G"]["main.0.weight"])


def test_forced_resume_into_another_architecture_is_refused_before_the_config_changes(dcgan_run):
    before = (dcgan_run / "config.yaml").read_text()
    with pytest.raises(CheckpointError, match="model: saved 'dcgan', now 'mlp'"):
        resume(dcgan_run, overrides=["model.name=mlp", "data.image_size=32"], force=True, log_format="quiet")
    assert (dcgan_run / "config.yaml").read_text() == before  # the run is left as it was


def test_generator_file_for_another_architecture_is_refused_cleanly(dcgan_run, tmp_path, capsys):
    G, cfg, _ = load_generator(dcgan_run / "generator.pt")  # as saved: loads
    assert cfg.model.name == "dcgan"
    state = safe_load(dcgan_run / "generator.pt")
    state["config"]["model"]["name"] = "dcgan-upsample"  # weights of one model under another's config
    mixed = tmp_path / "mixed.pt"
    torch.save(state, mixed)
    with pytest.raises(CheckpointError, match="model: saved 'dcgan', now 'dcgan-upsample'"):
        load_generator(mixed)
    assert main(["sample", str(mixed), "--n", "4", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "different architecture" in err and "Traceback" not in err


def test_conditional_resnet_trains_on_labelled_folders_and_samples_a_class(tmp_path, image_folder, tiny, capsys):
    """Labels from the first folder level drive a class-conditional ResNet with every BigGAN option
    (and the resnet presets' hinge loss and EMA generator)."""
    for i, path in enumerate(sorted(image_folder.iterdir())):
        (image_folder / f"class_{i % 3}").mkdir(exist_ok=True)
        shutil.move(path, image_folder / f"class_{i % 3}" / path.name)
    cfg = tiny(image_folder, "model.name=resnet", "model.num_classes=3", "data.labels=true",
               "model.spectral_norm=true", "model.spectral_norm_g=true", "model.attention=16",
               "model.hierarchical_z=true", "model.init=orthogonal", "loss.name=hinge", "ema.enabled=true",
               "train.max_steps=2")
    run = ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
    assert json.loads((run / "summary.json").read_text())["step"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["num_classes"] == 3
    out = tmp_path / "class2"
    assert main(["sample", str(run), "--n", "4", "--class", "2", "--out", str(out) + "/"]) == 0
    assert len(list(out.glob("*.png"))) == 4
    assert main(["sample", str(run), "--n", "4", "--class", "3", "--out", str(tmp_path / "bad.png")]) == 2
    assert "out of range" in capsys.readouterr().err
