"""--features swd: the sliced Wasserstein distance of Laplacian-pyramid patches, on real image files."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageChops, ImageFilter

import ganforge
from conftest import write_images
from ganforge.cli import main
from ganforge.config import ConfigError
from ganforge.metrics import swd
from ganforge.metrics.evaluate import evaluate_sources

from .conftest import N_EVAL

N = 64
LEVELS = ("swd_64px", "swd_32px", "swd_16px")


@pytest.fixture
def clothes(tmp_path, fashion_images):
    """64 real clothes at 64 px; the same blurred; the same shifted (wrapped 6 px right, 4 down); 64 others."""
    real, blurred, shifted, other = (tmp_path / name for name in ("real", "blurred", "shifted", "other"))
    write_images(real, fashion_images, N, size=64, formats=("png",))
    write_images(other, fashion_images[500:], N, size=64, formats=("png",))
    blurred.mkdir()
    shifted.mkdir()
    for p in real.glob("*.png"):
        with Image.open(p) as img:
            img.filter(ImageFilter.GaussianBlur(1.5)).save(blurred / p.name)
            ImageChops.offset(img, 6, 4).save(shifted / p.name)
    return real, blurred, shifted, other


def test_the_pyramid_levels_add_back_up_to_the_image():
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    pyramid = swd.laplacian_pyramid(images, 3)
    assert [p.shape[-1] for p in pyramid] == swd.levels(64) == [64, 32, 16]
    rebuilt = pyramid[-1]
    for band in reversed(pyramid[:-1]):  # upsample with the same filter and add each band back
        up = torch.zeros_like(band)
        up[:, :, ::2, ::2] = rebuilt
        rebuilt = band + swd._blur(up, gain=4.0)
    assert torch.allclose(rebuilt, images, atol=1e-3)
    assert swd.levels(40) == [40, 20] and swd.levels(16) == [16]


@pytest.mark.slow  # five evaluations of 64 images at 64 px: about 25 s on 2 busy cores
def test_identical_sets_score_zero_and_blurred_or_shifted_sets_score_higher_at_every_level(clothes):
    real, blurred, shifted, other = clothes
    same = evaluate_sources(str(real), str(real), 64, features="swd", n=N, use_cache=False)
    assert set(same) == {*LEVELS, "swd_mean", "n_generated", "n_real"} and same["n_generated"] == N
    assert all(abs(same[k]) < 1e-6 for k in (*LEVELS, "swd_mean"))
    blur = evaluate_sources(str(blurred), str(real), 64, features="swd", n=N, use_cache=False)
    shift = evaluate_sources(str(shifted), str(real), 64, features="swd", n=N, use_cache=False)
    others = evaluate_sources(str(other), str(real), 64, features="swd", n=N, use_cache=False)
    for scores in (blur, shift, others):
        assert all(scores[k] > 1.0 for k in LEVELS)
        assert scores["swd_mean"] == pytest.approx(sum(scores[k] for k in LEVELS) / 3)
    # Blur lives in the finest level: there it is far from the real set, further than other real clothes are.
    assert blur["swd_64px"] > 2 * others["swd_64px"] and blur["swd_64px"] > 2 * blur["swd_16px"]
    # Fixed seeds for the patches and directions: the same sets always score the same.
    assert evaluate_sources(str(blurred), str(real), 64, features="swd", n=N, use_cache=False) == blur


def test_eval_swd_prints_and_writes_every_level_and_the_mean(clothes, tmp_path, capsys):
    real, blurred, _, _ = clothes
    out = tmp_path / "swd.json"
    assert main(["eval", "--fake", str(blurred), "--real", str(real), "--features", "swd", "--n", str(N),
                 "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["features"] == "swd" and report["metrics"] == ["swd"] and report["image_size"] == 64
    for key in (*LEVELS, "swd_mean"):
        assert f"{key} " in printed and report[key] > 1.0
    assert "sliced Wasserstein" in printed and "not comparable" not in printed


def test_eval_swd_of_a_run_and_during_training(tmp_path, image_folder, tiny, capsys):
    """A generator's images against its real set: ``eval RUN --features swd``, and ``eval.every`` with swd
    logging each level and keeping the checkpoint of the lowest mean."""
    cfg = tiny(image_folder, "train.max_steps=4", "train.log_every=1", "eval.every=2", f"eval.n={N_EVAL}",
               "eval.features=swd", "ema.enabled=true")
    run = ganforge.train(cfg, runs_dir=tmp_path / "runs", log_format="quiet")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in lines if "swd_mean" in r]
    assert [r["step"] for r in scored] == [2, 4] and all(r["swd_32px"] > 0 and r["swd_16px"] > 0 for r in scored)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_metric"] == "swd_mean"
    assert summary["best_value"] == pytest.approx(min(r["swd_mean"] for r in scored), abs=1e-5)

    capsys.readouterr()
    assert main(["eval", str(run), "--features", "swd", "--n", str(N_EVAL), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((run / "eval" / f"run-swd-n{N_EVAL}.json").read_text())
    assert report["n_generated"] == N_EVAL and report["swd_mean"] > 0 and "swd_32px " in printed
    # No embedding to rank precision by: eval.best=precision with swd says what to do.
    with pytest.raises(ConfigError, match="eval.best=fid"):
        ganforge.train(tiny(image_folder, "train.max_steps=2", "eval.every=1", "eval.features=swd",
                            "eval.best=precision"), runs_dir=tmp_path / "runs", log_format="quiet")
