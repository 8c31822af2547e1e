"""The metrics' mathematics: closed forms, unbiasedness, and agreement with a reference implementation."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from ganforge.metrics import scores


def exact_gaussian_sample(rng, mean: np.ndarray, cov: np.ndarray, n: int) -> np.ndarray:
    """n points whose sample mean and (unbiased) covariance are exactly ``mean`` and ``cov``."""
    x = rng.normal(size=(n, mean.shape[0]))
    x -= x.mean(axis=0)
    whiten = np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False)))
    return x @ whiten.T @ np.linalg.cholesky(cov).T + mean


def random_rotation(rng, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_fid_of_a_set_against_itself_is_zero():
    rng = np.random.default_rng(0)
    for n, d in ((500, 64), (40, 128)):  # also fewer samples than dimensions: a singular covariance
        f = rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=d) + rng.normal(size=d)
        assert abs(scores.fid_from_features(f, f)) < 1e-6 * max(1.0, np.trace(np.cov(f, rowvar=False)))


def test_fid_matches_the_closed_form_frechet_distance_of_two_gaussians():
    rng = np.random.default_rng(1)
    d = 6
    rot = random_rotation(rng, d)  # same eigenvectors, different spectra: the closed form is explicit
    a, b = rng.uniform(0.2, 4.0, size=d), rng.uniform(0.2, 4.0, size=d)
    cov1, cov2 = rot @ np.diag(a) @ rot.T, rot @ np.diag(b) @ rot.T
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    f1, f2 = exact_gaussian_sample(rng, mu1, cov1, 400), exact_gaussian_sample(rng, mu2, cov2, 300)
    assert scores.fid_from_features(f1, f2) == pytest.approx(expected, rel=1e-9)
    # One dimension: (m1 - m2)^2 + (s1 - s2)^2.
    assert scores.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])) \
        == pytest.approx(9.0 + 1.0)


def test_fid_agrees_with_scipy_sqrtm_on_general_covariances():
    rng = np.random.default_rng(2)
    f1, f2 = rng.normal(size=(300, 32)) @ rng.normal(size=(32, 32)), rng.normal(size=(200, 32)) + 0.5
    (m1, s1), (m2, s2) = scores.feature_statistics(f1), scores.feature_statistics(f2)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real  # the TTUR / pytorch-fid formula
    reference = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert scores.frechet_distance(m1, s1, m2, s2) == pytest.approx(reference, rel=1e-6)


def test_fid_with_fewer_samples_than_dimensions_takes_a_cheaper_route_to_the_same_number():
    rng = np.random.default_rng(6)
    f1, f2 = rng.normal(size=(40, 96)) @ rng.normal(size=(96, 96)), rng.normal(0.3, 1.0, size=(30, 96))
    via_covariances = scores.frechet_distance(*scores.feature_statistics(f1), *scores.feature_statistics(f2))
    assert scores.fid_from_features(f1, f2) == pytest.approx(via_covariances, rel=1e-7)


def _kernel(x, y):
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def test_kid_is_unbiased_on_a_known_case():
    # Two distributions on a few points each: the true MMD^2 is an exact finite sum.
    rng = np.random.default_rng(3)
    support_p, support_q = rng.normal(size=(5, 4)), rng.normal(0.4, 1.0, size=(5, 4))
    true_mmd2 = _kernel(support_p, support_p).mean() + _kernel(support_q, support_q).mean() \
        - 2 * _kernel(support_p, support_q).mean()
    m, trials = 6, 4000
    estimates, biased = np.empty(trials), np.empty(trials)
    for t in range(trials):
        x, y = support_p[rng.integers(0, 5, m)], support_q[rng.integers(0, 5, m)]
        estimates[t] = scores.mmd2_unbiased(x, y)
        biased[t] = _kernel(x, x).mean() + _kernel(y, y).mean() - 2 * _kernel(x, y).mean()
    stderr = estimates.std() / np.sqrt(trials)
    assert abs(estimates.mean() - true_mmd2) < 4 * stderr
    assert abs(biased.mean() - true_mmd2) > 10 * stderr  # the plain V-statistic is visibly biased here
    # Same distribution: the expectation is 0, so small sets scatter around 0 (negative values included).
    same = [scores.mmd2_unbiased(support_p[rng.integers(0, 5, m)], support_p[rng.integers(0, 5, m)]) for _ in range(trials)]
    assert abs(np.mean(same)) < 4 * np.std(same) / np.sqrt(trials) and min(same) < 0


def test_inception_score_bounds():
    confident_distinct = np.eye(10) * 50.0  # each sample sure of a different class: IS = number of classes
    assert scores.inception_score(confident_distinct, splits=1)[0] == pytest.approx(10.0, rel=1e-6)
    all_same = np.tile(np.eye(10)[0] * 50.0, (20, 1))  # every sample the same class: IS = 1
    assert scores.inception_score(all_same, splits=2)[0] == pytest.approx(1.0, abs=1e-6)


def test_precision_recall_density_coverage_on_clear_cases():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(200, 8))
    assert scores.precision_recall(real, real) == (1.0, 1.0)
    assert scores.density_coverage(real, real)[1] == 1.0
    far = real + 100.0
    assert scores.precision_recall(far, real) == (0.0, 0.0)
    assert scores.density_coverage(far, real) == (0.0, 0.0)
    collapsed = real[0] + 1e-3 * rng.normal(size=(50, 8))  # mode collapse onto one real sample
    precision, recall = scores.precision_recall(collapsed, real)
    assert precision == 1.0 and recall < 0.2


# --------------------------------------------------------------------------------------------------
# Agreement with torch-fidelity (the reference implementation) on the same features
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(5)
    fake = rng.normal(0.2, 1.1, size=(300, 48)) @ rng.normal(size=(48, 48)) / 7
    real = rng.normal(size=(260, 48))
    return fake, real


def test_agrees_with_torch_fidelity_to_1e_3(features):
    pytest.importorskip("torch_fidelity", reason="reference needs the extra 'fid': pip install 'ganforge[fid]'")
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    fake, real = features
    ft, rt = torch.from_numpy(fake), torch.from_numpy(real)
    ref_fid = fid_statistics_to_metric(fid_features_to_statistics(ft), fid_features_to_statistics(rt), False)
    assert scores.fid_from_features(fake, real) == pytest.approx(ref_fid["frechet_inception_distance"], rel=1e-3)

    kid_args = dict(kid_subsets=30, kid_subset_size=100, verbose=False, rng_seed=2020, kid_kernel="poly",
                    kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    ref_kid = kid_features_to_metric(ft, rt, **kid_args)
    kid_mean, kid_std = scores.kernel_distance(fake, real, subsets=30, subset_size=100, seed=2020)
    assert kid_mean == pytest.approx(ref_kid["kernel_inception_distance_mean"], rel=1e-3)
    assert kid_std == pytest.approx(ref_kid["kernel_inception_distance_std"], rel=1e-3)

    logits = fake[:, :20] * 3
    ref_is = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=2020)
    is_mean, is_std = scores.inception_score(logits, splits=10, seed=2020)
    assert is_mean == pytest.approx(ref_is["inception_score_mean"], rel=1e-3)
    assert is_std == pytest.approx(ref_is["inception_score_std"], rel=1e-3)

    ref_pr = prc_features_to_metric(ft.float(), rt.float(), prc_neighborhood=3, prc_batch_size=10000,
                                    save_cpu_ram=False, verbose=False)
    precision, recall = scores.precision_recall(fake, real)
    assert precision == pytest.approx(ref_pr["precision"], abs=1e-3)
    assert recall == pytest.approx(ref_pr["recall"], abs=1e-3)


def test_the_copy_ratio_tells_copies_and_new_images_of_a_real_set_apart(fashion_images):
    images = fashion_images.reshape(len(fashion_images), -1).astype(np.float32) / 255.0
    train, unseen = images[:1000], images[1000:2000]  # two halves of the same real set
    rng = np.random.default_rng(0)
    copies = train[rng.permutation(1000)[:500]]
    nearly = copies + rng.normal(0, 0.01, size=copies.shape).astype(np.float32)
    noise = rng.uniform(0, 1, size=(500, images.shape[1])).astype(np.float32)
    assert scores.copy_ratio(copies, train) == 0.0
    assert scores.copy_ratio(nearly, train) < 0.2
    # Unseen real images sit about as far from the set as its images from each other; a half has fewer
    # neighbours than the whole, so a little further.
    assert 0.8 < scores.copy_ratio(unseen, train) < 1.4
    assert scores.copy_ratio(noise, train) > 2.0
    with pytest.raises(ValueError, match="at least 2 real"):
        scores.copy_ratio(copies, train[:1])
