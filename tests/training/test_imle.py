"""IMLE's term in G's loss (``loss.imle``): matching every real image with its nearest sample, the pull
that follows, its state through a real checkpoint, and its refusals; on real image files."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import fit_whole_and_resumed, watch_d, write_images
from ganforge.config import ConfigError
from ganforge.data import open_source
from ganforge.sampling import generate
from ganforge.training import imle
from ganforge.training.imle import IMLETerm, pyramid_l1
from ganforge.training.trainer import Trainer


def term_on(cfg, tmp_path) -> tuple[Trainer, IMLETerm]:
    """A real trainer for ``cfg`` and its IMLE term, started on the run's dataset as fit() starts it."""
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    (term,) = trainer.step_fn.g_terms
    term.start(open_source(cfg), trainer.device)
    return trainer, term


def brute_force_nearest(images: torch.Tensor, samples: torch.Tensor, size: int, allowed=None) -> torch.Tensor:
    """For each image, the index of the closest sample at ``size`` pixels, one pair at a time."""
    small = lambda x: F.interpolate(x.float(), size=(size, size), mode="area")  # noqa: E731
    real = small(images.float() / 127.5 - 1.0)
    fake = small(samples)
    out = []
    for i in range(real.shape[0]):
        d = ((fake - real[i:i + 1]) ** 2).flatten(1).sum(1)
        if allowed is not None:
            d[~allowed[i]] = float("inf")
        out.append(int(d.argmin()))
    return torch.tensor(out)


def test_matching_gives_each_image_the_latent_of_its_nearest_sample(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.imle=1", "loss.imle_pool=3", "loss.imle_size=8")
    trainer, term = term_on(cfg, tmp_path)
    assert term.images.shape == (64, 3, 32, 32) and term.images.dtype == torch.uint8
    torch.manual_seed(7)
    term.match(trainer.G)
    torch.manual_seed(7)  # the same 192 candidates again, in one batch as the matching drew them
    candidates = torch.randn(3 * 64, cfg.model.nz)
    samples = generate(trainer.G, candidates)
    nearest = brute_force_nearest(term.images, samples, 8)
    assert torch.equal(term.latents, candidates[nearest])
    assert len(set(nearest.tolist())) > 4  # different images find different samples, even untrained


def test_a_conditional_model_matches_images_with_samples_of_their_class(tmp_path, fashion_images, tiny):
    folder = tmp_path / "classes"
    write_images(folder, fashion_images, 48, classes=3)
    cfg = tiny(folder, "loss.imle=1", "loss.imle_pool=2", "model.num_classes=3", "data.labels=true")
    trainer, term = term_on(cfg, tmp_path / "run")
    assert sorted(set(term.labels.tolist())) == [0, 1, 2]
    torch.manual_seed(3)
    term.match(trainer.G)
    torch.manual_seed(3)
    candidates = torch.randn(2 * 48, cfg.model.nz)
    cand_labels = term.labels.repeat(2)
    samples = generate(trainer.G, candidates, cand_labels)
    nearest = brute_force_nearest(term.images, samples, cfg.loss.imle_size,
                                  allowed=term.labels[:, None] == cand_labels[None, :])
    assert torch.equal(term.latents, candidates[nearest])
    assert torch.equal(cand_labels[nearest], term.labels)


def test_training_with_the_term_pulls_samples_towards_their_images(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.imle=10", "loss.imle_every=10", "train.max_steps=40", "train.epochs=100",
               "optim.g.lr=2e-3")
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    trainer.fit()
    values = [r["loss_imle"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
              if "loss_imle" in r]
    assert len(values) >= 10
    assert sum(values[-3:]) / 3 < 0.8 * sum(values[:3]) / 3  # the reconstruction error falls
    # The matched pairs are closer after training than the same images to fresh random samples.
    (term,) = trainer.step_fn.g_terms
    G, reals = trainer.G, term.images.float() / 127.5 - 1.0
    matched = pyramid_l1(generate(G, term.latents), reals)
    unmatched = pyramid_l1(generate(G, torch.randn_like(term.latents)), reals)
    assert matched < unmatched


def test_a_warm_up_trains_g_alone_on_the_term_then_hands_over_to_the_gan(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.imle=0", "loss.imle_warmup=4", "train.max_steps=8", "train.epochs=100",
               "train.log_every=1")
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    seen = watch_d(trainer)  # after each step: is D still as it started?
    trainer.fit()
    assert seen == [True] * 4 + [False] * 4  # D waits for the warm-up's 4 steps, then trains
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "loss_g" in r]
    assert [("loss_imle" in r) for r in records] == [True] * 4 + [False] * 4  # the reading ends with the term
    assert all(r["loss_d"] == 0 for r in records[:4]) and all(r["loss_d"] != 0 for r in records[4:])


def test_resume_is_exact_with_the_term_on(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.imle=1", "loss.imle_every=3", "train.max_steps=4", "train.midsave_steps=2",
               "ema.enabled=true", "ema.decay=0.9")
    whole, a, b = fit_whole_and_resumed(cfg, tmp_path)  # G, D and G_ema end equal
    assert torch.equal(a["g_terms"][0]["latents"], b["g_terms"][0]["latents"])
    assert a["g_terms"][0]["next_match"] == b["g_terms"][0]["next_match"] == 6  # matched at steps 0 and 3


def test_broken_files_are_left_out_of_the_matching(tmp_path, image_folder, tiny):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    _, term = term_on(tiny(image_folder, "loss.imle=1"), tmp_path)
    assert term.images.shape[0] == 64  # 65 files, one broken


def test_bad_settings_are_refused_with_the_key_named(tmp_path, image_folder, tiny):
    with pytest.raises(ConfigError, match="loss.imle and loss.imle_warmup must be >= 0"):
        Trainer(tiny(image_folder, "loss.imle=-1"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="loss.imle_size"):
        Trainer(tiny(image_folder, "loss.imle=1", "loss.imle_size=64"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="loss.imle_pool"):
        Trainer(tiny(image_folder, "loss.imle=1", "loss.imle_pool=0"), tmp_path, log_format="quiet")


def test_a_set_too_large_for_memory_is_refused_before_training(tmp_path, image_folder, tiny, monkeypatch):
    monkeypatch.setattr(imle, "MAX_BYTES", 100 * 3 * 32 * 32 // 2)  # room for 50 of the 64 images
    cfg = tiny(image_folder, "loss.imle=1", "train.max_steps=2")
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="loss.imle keeps the training images in memory.*set loss.imle=0"):
        trainer.fit()
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
