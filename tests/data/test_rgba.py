"""Transparency: ``data.channels=4`` trains on RGBA with the alpha kept, on real emoji (Noto, RGBA PNGs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from conftest import tiny_config
from ganforge import nets
from ganforge.cli import main
from ganforge.data import open_source
from ganforge.data.decode import decode_to_tensor, resize_crop
from ganforge.metrics.evaluate import to_uint8_rgb


def _composite(rgba: np.ndarray, background=(255, 255, 255)) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    return rgba[..., :3] * a + np.array(background, dtype=np.float64) * (1 - a)


def test_alpha_is_kept_exactly_at_the_native_size(emoji_dir):
    for p in sorted(emoji_dir.glob("*.png"))[:8]:
        x = decode_to_tensor(p.read_bytes(), 4, (255, 255, 255))
        with Image.open(p) as img:
            expected = np.asarray(img.convert("RGBA"))
        assert x.shape == (4, 64, 64)
        assert np.array_equal(x.permute(1, 2, 0).numpy(), expected)
    assert any((np.asarray(Image.open(p).convert("RGBA"))[..., 3] == 0).any() for p in emoji_dir.glob("*.png"))


def test_resizing_rgba_weights_colours_by_alpha(emoji_dir):
    """Downscaled RGBA, composited on white, is the downscaled composite: no dark fringes from the
    black colour of transparent pixels (which a plain resize would blend into the edges)."""
    worst, plain_worst = 0.0, 0.0
    import torchvision.transforms.v2.functional as TF
    for p in sorted(emoji_dir.glob("*.png"))[:16]:
        x = decode_to_tensor(p.read_bytes(), 4, (255, 255, 255))
        small = resize_crop(x, 32).permute(1, 2, 0).numpy()
        white = decode_to_tensor(p.read_bytes(), 3, (255, 255, 255))
        reference = resize_crop(white, 32).permute(1, 2, 0).numpy().astype(np.float64)
        worst = max(worst, float(np.abs(_composite(small) - reference).max()))
        plain = TF.resize(x, 32, antialias=True).permute(1, 2, 0).numpy()
        plain_worst = max(plain_worst, float(np.abs(_composite(plain) - reference).max()))
    assert worst <= 3  # rounding only
    assert plain_worst > 20  # what the premultiplied resize avoids


def test_rgb_runs_still_composite_on_data_background(emoji_dir):
    p = sorted(emoji_dir.glob("*.png"))[0]
    with Image.open(p) as img:
        rgba = np.asarray(img.convert("RGBA"))
    for bg in ((255, 255, 255), (0, 0, 0)):
        x = decode_to_tensor(p.read_bytes(), 3, bg).permute(1, 2, 0).numpy().astype(np.float64)
        assert np.abs(x - _composite(rgba, bg)).max() <= 1
    cfg = ganforge.config.load(overrides=[f"data.source={emoji_dir}", "data.channels=3"])
    assert cfg.data.background == [255, 255, 255]


@pytest.mark.parametrize("name", sorted(nets.REGISTRY))
def test_every_family_builds_four_channel_models(name):
    size = 28 if name == "mlp" else 32
    cfg = ganforge.config.load(overrides=[f"model.name={name}", f"data.image_size={size}", "data.channels=4",
                                          "model.nz=16", "model.ngf=8", "model.ndf=8", "model.g_hidden=[32,64]",
                                          "model.d_hidden=[64,32]", "model.fastgan_decoder=0" if name == "fastgan"
                                          else "model.nz=16"])
    G, D = nets.build(cfg)
    x = G(torch.randn(4, 16))
    assert x.shape == (4, 4, size, size)
    out = D(x)
    assert out.shape == (4,)
    out.sum().backward()


def test_training_on_rgba_keeps_alpha_and_writes_rgba_pngs(emoji_dir, tmp_path, capsys):
    cfg = tiny_config(emoji_dir, "data.channels=4", "train.epochs=1", "train.report=true", channels=4)
    run = ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
    # The real images as the loader gave them: transparent background kept, not composited.
    with Image.open(run / "real_samples.png") as real:
        assert real.mode == "RGBA"
        assert (np.asarray(real)[..., 3] == 0).mean() > 0.2
    with Image.open(run / "samples" / "epoch_0001.png") as grid:
        assert grid.mode == "RGBA"
    assert main(["sample", str(run), "--n", "3", "--out", str(tmp_path / "each") + "/"]) == 0
    files = sorted((tmp_path / "each").glob("*.png"))
    assert len(files) == 3
    for f in files:
        with Image.open(f) as img:
            assert img.mode == "RGBA" and img.size == (32, 32)
    assert 'class="grid sample-grid transparent"' in (run / "report.html").read_text()


def test_the_loader_batch_holds_the_files_alpha(emoji_dir):
    cfg = tiny_config(emoji_dir, "data.channels=4", "data.image_size=64", "data.limit=4", channels=4)
    ds = open_source(cfg)
    image, _, _ = ds[0]
    with Image.open(emoji_dir / ds.name(0)) as img:
        assert np.array_equal(image[3].numpy(), np.asarray(img.convert("RGBA"))[..., 3])


def test_metrics_composite_rgba_on_white():
    rgba = torch.tensor([[[[255]], [[0]], [[0]], [[0]]], [[[255]], [[0]], [[0]], [[255]]]], dtype=torch.uint8)
    rgb = to_uint8_rgb(rgba)
    assert rgb[0, :, 0, 0].tolist() == [255, 255, 255]  # transparent: the white background
    assert rgb[1, :, 0, 0].tolist() == [255, 0, 0]  # opaque red stays red


def test_four_channels_on_opaque_images_warns(image_folder, capsys):
    cfg = tiny_config(image_folder, "train.max_steps=1", channels=4)
    from ganforge.data.channel_check import check_channels
    check_channels(open_source(cfg), cfg)
    assert "data.channels=4 keeps transparency, but the images" in capsys.readouterr().err


def test_named_sets_get_an_opaque_alpha():
    cfg = ganforge.config.load(overrides=["data.source=fashion-mnist", "data.channels=4", "data.limit=8"])
    try:
        ds = open_source(cfg)
    except ganforge.data.DataError as e:
        pytest.skip(str(e))
    image, _, _ = ds[0]
    assert image.shape == (4, 32, 32) and bool((image[3] == 255).all())
    assert torch.equal(image[0], image[1])  # grey in three colour channels
