"""The command line: describe, train, and sample as a user runs them."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

import ganforge
from ganforge.cli import main


def test_describe_lists_tutorial_layers_in_order(capsys):
    assert main(["describe", "--preset", "dcgan-celeba64"]) == 0
    out = capsys.readouterr().out
    g, d = out.split("Discriminator:")
    g_layers = re.findall(r"\((\d+)\): (\w+)\((.*)\)$", g, flags=re.M)
    assert [name for _, name, _ in g_layers] == [
        "ConvTranspose2d", "BatchNorm2d", "ReLU", "ConvTranspose2d", "BatchNorm2d", "ReLU",
        "ConvTranspose2d", "BatchNorm2d", "ReLU", "ConvTranspose2d", "BatchNorm2d", "ReLU",
        "ConvTranspose2d", "Tanh"]
    assert g_layers[0][2].startswith("100, 512, kernel_size=(4, 4), stride=(1, 1), bias=False")
    assert g_layers[-2][2].startswith("64, 3, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), bias=False")
    d_names = re.findall(r"(?:\(\d+\)|\(output_activation\)): (\w+)\(", d)
    assert d_names == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU", "Conv2d", "BatchNorm2d",
                       "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU", "Conv2d", "Sigmoid"]
    assert "Generator parameters: 3,576,704" in out and "Discriminator parameters: 2,765,568" in out


def test_config_error_is_clean(capsys):
    assert main(["train", "train.epoch=2"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.epoch'" in err and "train.epochs" in err and "Traceback" not in err


def test_missing_data_folder_is_clean(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.fixture
def trained_run(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "train.epochs=1")
    return ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")


def test_sample_grid_and_folder_and_seed(tmp_path, trained_run):
    grid = tmp_path / "grid.png"
    assert main(["sample", str(trained_run), "--n", "16", "--out", str(grid), "--seed", "3"]) == 0
    img = Image.open(grid)
    assert img.size == (4 * 32 + 5 * 2, 4 * 32 + 5 * 2)  # 4x4 grid with 2-pixel padding
    folder = tmp_path / "many"
    assert main(["sample", str(trained_run), "--n", "16", "--out", str(folder) + "/", "--seed", "3"]) == 0
    files = sorted(folder.glob("*.png"))
    assert len(files) == 16 and Image.open(files[0]).size == (32, 32)
    again = tmp_path / "grid2.png"
    main(["sample", str(trained_run), "--n", "16", "--out", str(again), "--seed", "3"])
    assert np.array_equal(np.asarray(Image.open(grid)), np.asarray(Image.open(again)))
    other = tmp_path / "grid3.png"
    main(["sample", str(trained_run), "--n", "16", "--out", str(other), "--seed", "4"])
    assert not np.array_equal(np.asarray(Image.open(grid)), np.asarray(Image.open(other)))


def test_sampling_does_not_change_the_generator(trained_run):
    import torch
    from ganforge.sampling import generate, load_generator
    G, cfg, _ = load_generator(trained_run)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    generate(G, torch.randn(8, cfg.model.nz))
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Samples are diverse, not copies of one image.
    imgs = generate(G, torch.randn(8, cfg.model.nz))
    assert imgs.std(0).mean() > 1e-3


def test_run_directory_never_overwritten(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "train.max_steps=1")
    a = ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
    b = ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
    assert a != b and (a / "generator.pt").is_file() and (b / "generator.pt").is_file()


def test_one_sample_looks_like_it_does_in_a_grid(trained_run):
    # BatchNorm generators sample with batch statistics: a lone sample must match the same latent's
    # image in a bigger batch, not a batch-of-one artefact (near-constant image).
    import torch
    from ganforge.sampling import MIN_STATS_BATCH, generate, load_generator
    G, cfg, _ = load_generator(trained_run)
    z = torch.randn(MIN_STATS_BATCH, cfg.model.nz, generator=torch.Generator().manual_seed(1))
    alone = generate(G, z[:1])
    assert alone.std() > 0.05  # a batch of one without padding normalises to a flat image
    in_grid = generate(G, torch.cat([z[:1], z[1:]]))[:1]
    assert (alone - in_grid).abs().mean() < 0.25


def test_resume_latest_passes_over_a_run_that_failed_before_saving(tmp_path, image_folder, tiny, capsys):
    runs = tmp_path / "runs"
    good = ganforge.train(tiny(image_folder, "train.max_steps=2"), runs_dir=runs, log_format="quiet")
    # A later start that fails when opening its data leaves a run directory with only config.yaml.
    assert main(["train", "--preset", "quickstart", "--runs-dir", str(runs), "data.source=" + str(tmp_path / "gone")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert len(list(runs.iterdir())) == 2
    assert main(["train", "--resume", "latest", "--runs-dir", str(runs), "train.max_steps=3", "--quiet"]) == 0
    assert json.loads((good / "summary.json").read_text())["step"] == 3


def test_train_name_seed_device_and_overrides_on_both_sides_of_options(tmp_path, image_folder, capsys):
    runs = tmp_path / "runs"
    # Overrides before and after --data: a plain argparse parse stops at --data ("unrecognized arguments").
    argv = ["train", "--preset", "quickstart", "data.image_size=32", "data.channels=3", "--data", str(image_folder),
            "data.batch_size=16", "data.num_workers=0", "model.ngf=8", "--name", "fashion-small", "model.ndf=8",
            "model.nz=16", "--seed", "5", "train.n_fixed_noise=16", "--device", "cpu", "train.max_steps=2",
            "train.tensorboard=false", "train.report=false", "--runs-dir", str(runs), "--quiet"]
    assert main(argv) == 0
    (run,) = runs.iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_fashion-small", run.name)
    saved = ganforge.config.from_dict(__import__("yaml").safe_load((run / "config.yaml").read_text()))
    assert (saved.train.seed, saved.train.device, saved.data.batch_size, saved.model.nz) == (5, "cpu", 16, 16)
    # The other commands find the run by that name.
    assert main(["sample", "fashion-small", "--runs-dir", str(runs), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert main(["export", "fashion-small", str(tmp_path / "shared"), "--runs-dir", str(runs)]) == 0
    assert main(["sample", str(tmp_path / "shared"), "--seeds", "1", "--out", f"{tmp_path}/e/"]) == 0
    assert main(["report", "fashion-small", "--runs-dir", str(runs), "--no-media"]) == 0
    assert main(["train", "--resume", "fashion-small", "--runs-dir", str(runs), "train.max_steps=3", "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["step"] == 3
    capsys.readouterr()
    assert main(["train", "--name", "../outside", "--runs-dir", str(runs)]) == 2
    assert "cannot be used" in capsys.readouterr().err and not (tmp_path / "outside").exists()
    assert main(["train", "--resume", "latest", "--name", "x", "--runs-dir", str(runs)]) == 2
    assert "--name x names a new run" in capsys.readouterr().err
    assert main(["sample", "latest", "--runs-dir", str(runs), "--device", "cuda:99", "--out", str(tmp_path / "x.png")]) == 2
    assert "--device cuda:99" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
