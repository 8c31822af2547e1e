"""Bad settings are refused before any data is read, naming the key and the fix; channels are checked
against the images when they are opened, before the first step."""
from __future__ import annotations

import json

import pytest

import ganforge
from ganforge.cli import main
from ganforge.config import ConfigError

from .conftest import one_thread, tiny_args, tiny_cfg, write_images


@pytest.mark.parametrize("override, said", [
    ("data.batch_size=0", "data.batch_size must be > 0, got 0"),
    ("optim.d.lr=-0.1", "optim.d.lr must be > 0, got -0.1"),
    ("data.batch_size=many", "data.batch_size: expected an integer, got 'many'"),
    ("data.image_size=48", "data.image_size=48 is not supported by model.name=dcgan"),
    ("data.channels=2", "data.channels: 2 is not one of 1, 3"),
    ("train.device=gpu", "train.device='gpu' is not a device: use auto, cpu, cuda, cuda:N"),
    ("train.cuda_graphs=true", "train.cuda_graphs=true (CUDA graphs) needs a CUDA device, but train.device=cpu"),
    ("data.num_workers=-3", "data.num_workers must be -1 (one per core), 0 (none) or more"),
    ("data.max_bad_fraction=1.5", "data.max_bad_fraction must be between 0 and 1"),
    ("data.timeout_seconds=-1", "data.timeout_seconds must be >= 0"),
])
def test_bad_settings_are_refused_before_any_data_is_read(tmp_path, capsys, override, said):
    # The dataset does not exist: a config error proves the config was checked first.
    args = ["train", "--runs-dir", str(tmp_path / "runs"), "--quiet",
            *tiny_args(tmp_path / "no-such-images"), override]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert said in err and "no-such-images" not in err
    assert not (tmp_path / "runs").exists()


def test_one_channel_on_colour_images_is_refused_before_training(tmp_path, images, capsys):
    with pytest.raises(ConfigError) as e:
        ganforge.train(tiny_cfg(images, "data.channels=1"), runs_dir=tmp_path, log_format="quiet")
    assert "data.channels=1 but the images in" in str(e.value) and "Set data.channels=3" in str(e.value)
    (run,) = tmp_path.iterdir()
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()


def test_three_channels_on_grayscale_images_trains_with_a_warning(tmp_path, fashion_images, capsys):
    gray = tmp_path / "gray"
    write_images(gray, fashion_images, 32, rgb=False)
    with one_thread():
        run = ganforge.train(tiny_cfg(gray, "train.max_steps=1"), runs_dir=tmp_path / "runs", log_format="quiet")
    assert "warning: data.channels=3 but the images in" in capsys.readouterr().err
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
