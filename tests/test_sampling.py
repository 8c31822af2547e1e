"""Per-seed sampling, walks between chosen seeds, and the two truncation tricks, on a generator trained on
real Fashion-MNIST files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.config import ConfigError
from ganforge.sampling import (STANDING_BATCH, STANDING_BATCHES, generate, generate_each, load_generator, parse_seeds,
                               seed_latents, standing_statistics, truncate, truncate_resample)

from conftest import tiny_config, write_images


@pytest.fixture(scope="module")
def run(tmp_path_factory, fashion_images):
    """A tiny DCGAN (BatchNorm: images depend on their batch unless sampling takes care) trained 1 epoch."""
    root = tmp_path_factory.mktemp("seeds")
    write_images(root / "images", fashion_images, 64)
    return ganforge.train(tiny_config(root / "images", "train.epochs=1"), runs_dir=root / "runs", log_format="quiet")


@pytest.fixture(scope="module")
def fastgan_run(tmp_path_factory, fashion_images):
    """A tiny FastGAN (z on the unit sphere, BatchNorm, noise layers) trained 1 epoch on real images."""
    root = tmp_path_factory.mktemp("fastgan")
    write_images(root / "images", fashion_images, 64)
    cfg = tiny_config(root / "images", "model.name=fastgan", "model.init=dcgan", "model.fastgan_decoder=0",
                      "loss.name=hinge", "train.epochs=1")
    return ganforge.train(cfg, runs_dir=root / "runs", log_format="quiet")


def spread(images: torch.Tensor) -> float:
    """How much the images differ from one another: the mean over pixels of their standard deviation."""
    return images.std(dim=0).mean().item()


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(np.int16)


def test_seed_lists_and_ranges():
    assert parse_seeds("0-3,100") == [0, 1, 2, 3, 100]
    assert parse_seeds("5, 2,5") == [5, 2]  # in the order given, each once
    for bad, why in (("3-1", "runs backwards"), ("a", "not a seed or a range"), ("", "no seeds"),
                     (str(2 ** 32), "below 2\\*\\*32"), ("0-200000", "more than")):
        with pytest.raises(ConfigError, match=why):
            parse_seeds(bad)


def test_a_seed_gives_its_latent_alone():
    z, labels = seed_latents([7, 3], nz=16)
    expected = torch.randn(1, 16, generator=torch.Generator().manual_seed(3))
    assert labels is None and torch.equal(z[1:], expected)  # stylegan2-ada's convention: one generator per seed
    assert torch.equal(seed_latents([3], nz=16)[0], z[1:])  # whatever else is asked for
    _, classes = seed_latents([3, 3, 4], nz=16, num_classes=10)
    assert classes[0] == classes[1] and 0 <= int(classes[2]) < 10


def test_biggan_truncation_resamples_and_scaling_scales():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 8, generator=g)
    t = truncate_resample(z, 1.0, torch.Generator().manual_seed(1))
    inside = z.abs() <= 1.0
    assert t.abs().max() <= 1.0 and torch.equal(t[inside], z[inside])  # only entries beyond T are drawn again
    # A standard normal truncated to [-1, 1] has standard deviation 0.5379 (scaling by 0.5 would give 0.5).
    assert abs(t.std().item() - 0.5379) < 0.005
    assert abs(truncate(z, 0.5).std().item() - 0.5) < 0.01
    again = truncate_resample(z, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(t, again)
    with pytest.raises(ConfigError, match="must be positive"):
        truncate_resample(z, 0.0, g)


def test_sample_seeds_writes_one_image_per_seed_the_same_every_time(run, tmp_path, capsys):
    out = tmp_path / "many"
    assert main(["sample", str(run), "--seeds", "0-3,9", "--out", f"{out}/", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png",
                                                     "seed0009.png"]
    assert Image.open(out / "seed0003.png").size == (32, 32)
    alone = tmp_path / "alone"
    assert main(["sample", str(run), "--seeds", "3", "--out", f"{alone}/"]) == 0  # --device defaults to auto
    # The same seed, alone or among others, gives the same image: BatchNorm's batch statistics come from
    # the seed's latent and fixed reference latents, never from the other seeds asked for.
    assert np.array_equal(pixels(alone / "seed0003.png"), pixels(out / "seed0003.png"))
    assert not np.array_equal(pixels(out / "seed0002.png"), pixels(out / "seed0003.png"))
    grid = tmp_path / "grid.png"
    assert main(["sample", str(run), "--seeds", "0-3", "--out", str(grid)]) == 0
    assert Image.open(grid).size == (2 * 34 + 2, 2 * 34 + 2)
    assert np.array_equal(pixels(grid)[2:34, 2:34], pixels(out / "seed0000.png"))  # grid tiles are the same images
    capsys.readouterr()
    with pytest.raises(SystemExit):  # one or the other, argparse says
        main(["sample", str(run), "--seeds", "0-3", "--n", "4"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_truncation_flags_named_apart(run, tmp_path, capsys):
    def one(*flags):
        folder = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        assert main(["sample", str(run), "--seeds", "5", "--out", f"{folder}/", *flags]) == 0
        return pixels(folder / "seed0005.png")

    plain = one()
    resampled = one("--truncation-resample", "0.5")
    assert not np.array_equal(plain, resampled) and np.array_equal(resampled, one("--truncation-resample", "0.5"))
    scaled = one("--truncation", "0.5")
    assert np.array_equal(scaled, one("--truncation-scale", "0.5"))  # the old flag and its explicit name
    assert not np.array_equal(scaled, plain) and not np.array_equal(scaled, resampled)
    # Nothing is beyond 100, so nothing is redrawn: the images of untruncated latents with the statistics
    # every truncated sample gets (standing ones, since batch statistics would undo a truncation).
    assert np.array_equal(one("--truncation-resample", "100"), one("--bn", "standing"))
    capsys.readouterr()
    assert main(["sample", str(run), "--truncation-resample", "-1"]) == 2
    assert "threshold must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["run", "fastgan_run"])
def test_truncation_pulls_samples_towards_the_average_one(which, request):
    # A DCGAN with batch statistics (which would normalise a scaled batch right back) and FastGAN (which
    # puts z on the sphere, which would undo any scale of z): in both, psi must really act.
    G, cfg, _ = load_generator(request.getfixturevalue(which))
    z = torch.randn(48, cfg.model.nz, generator=torch.Generator().manual_seed(0))
    plain = generate(G, z)
    assert torch.equal(generate(G, z, psi=1.0), plain)  # psi 1 changes nothing, statistics included
    near, nearer = generate(G, z, psi=0.5), generate(G, z, psi=0.1)
    assert spread(nearer) < spread(near) < spread(plain)
    assert spread(nearer) < 0.5 * spread(plain)
    # A truncated latent gives its image whatever else is asked for (fixed statistics; noise drawn per
    # image), and the model's own BatchNorm statistics are left as they were.
    before = {k: v.clone() for k, v in G.state_dict().items()}
    assert torch.allclose(generate_each(G, z[:4], psi=0.5)[2], generate_each(G, z[2:3], psi=0.5)[0], atol=1e-6)
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())
    with pytest.raises(ConfigError, match="psi must be in"):
        generate(G, z, psi=1.5)


def test_standing_statistics_average_the_batches_of_untruncated_latents(fastgan_run):
    G, cfg, _ = load_generator(fastgan_run)
    first_bn = next(m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d))
    own = first_bn.running_mean.clone()
    seen = []
    hook = first_bn.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    with standing_statistics(G, cfg.model.nz, torch.device("cpu")):
        standing = first_bn.running_mean.clone()
        assert not first_bn.training
    hook.remove()
    assert len(seen) == STANDING_BATCHES and seen[0].shape[0] == STANDING_BATCH
    # The mean over every batch alike (a cumulative average), then G's own statistics back.
    assert torch.allclose(standing, torch.cat(seen).mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.equal(first_bn.running_mean, own) and not torch.equal(standing, own)


def test_a_truncated_fastgan_seed_gives_the_same_image_alone_or_among_others(fastgan_run, tmp_path):
    out, alone = tmp_path / "many", tmp_path / "alone"
    assert main(["sample", str(fastgan_run), "--seeds", "0-3", "--truncation", "0.6", "--out", f"{out}/"]) == 0
    assert main(["sample", str(fastgan_run), "--seeds", "2", "--truncation", "0.6", "--out", f"{alone}/"]) == 0
    assert np.array_equal(pixels(alone / "seed0002.png"), pixels(out / "seed0002.png"))
    assert main(["sample", str(fastgan_run), "--seeds", "2", "--out", f"{tmp_path}/plain/"]) == 0
    assert not np.array_equal(pixels(tmp_path / "plain" / "seed0002.png"), pixels(out / "seed0002.png"))


def test_interpolate_walks_between_chosen_seeds(run, tmp_path, capsys):
    assert main(["sample", str(run), "--seeds", "3,17,42", "--out", f"{tmp_path}/ends/"]) == 0
    out = tmp_path / "walk.gif"
    assert main(["interpolate", str(run), "--seeds", "3,17,42", "--steps", "4", "--out", str(out)]) == 0
    frames = 2 * (4 - 1) + 1  # three seeds, two legs of 4 images sharing the middle one
    grid = pixels(tmp_path / "walk.png")
    assert grid.shape[:2] == (34 + 2, frames * 34 + 2)  # one walk, left to right
    tile = lambda k: grid[2:34, 2 + 34 * k:34 + 34 * k]  # noqa: E731
    # The walk passes through exactly the images `sample --seeds` gives for those seeds.
    assert np.array_equal(tile(0), pixels(tmp_path / "ends" / "seed0003.png"))
    assert np.array_equal(tile(3), pixels(tmp_path / "ends" / "seed0017.png"))
    assert np.array_equal(tile(frames - 1), pixels(tmp_path / "ends" / "seed0042.png"))
    with Image.open(out) as gif:
        assert gif.n_frames == 2 * frames - 2
    capsys.readouterr()
    assert main(["interpolate", str(run), "--seeds", "3", "--out", str(out)]) == 2
    assert "at least 2 seeds" in capsys.readouterr().err
    assert main(["interpolate", str(run), "--seeds", "3,4", "--rows", "2", "--out", str(out)]) == 2
    assert "leave out --rows" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_seed_gives_the_same_image_on_cpu_and_gpu(run):
    G, cfg, _ = load_generator(run)
    z, _ = seed_latents([0, 1, 2], cfg.model.nz)
    from ganforge.sampling import generate_each
    cpu = generate_each(G, z)
    gpu = generate_each(G.cuda(), z.cuda()).cpu()
    assert (cpu - gpu).abs().max() < 1e-3


def test_a_grid_replaces_the_previous_one_whole_and_names_a_suffix_it_cannot_write(tmp_path):
    from ganforge.sampling import save_grid
    path = tmp_path / "grid.png"
    save_grid(torch.zeros(4, 3, 8, 8), path)
    save_grid(torch.ones(9, 3, 8, 8), path)  # written over: the new grid, never a mix
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (3 * 10 + 2, 3 * 10 + 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match=r"grid\.xyz.*\.png"):
        save_grid(torch.zeros(4, 3, 8, 8), tmp_path / "grid.xyz")
    assert not (tmp_path / "grid.xyz").exists()
