"""The metrics' mathematics on feature vectors, whatever network the features came from.

Each function follows the paper that defined the metric and the reference code the field compares with
(TTUR's FID, Binkowski et al.'s KID, Salimans et al.'s IS, Kynkaanniemi et al.'s precision/recall, Naeem
et al.'s density/coverage); ``tests/metrics/test_scores.py`` checks them against closed forms and
against torch-fidelity's implementation on the same features.  Arrays are float64 numpy: covariance
square roots lose digits in float32.
"""
from __future__ import annotations

import numpy as np
import torch


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features: what FID compares."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors of shape (N, D), got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues below 0 are rounding)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the Frechet distance of two Gaussians.

    tr (S1 S2)^(1/2) = tr (S1^(1/2) S2 S1^(1/2))^(1/2): the right-hand side is symmetric, so two
    symmetric eigendecompositions do it, stably even for the singular covariances of fewer samples
    than dimensions (where scipy's sqrtm needs an epsilon added).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    root1 = _sqrt_psd(sigma1)
    inner = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_from_features(fake: np.ndarray, real: np.ndarray) -> float:
    """FID of two feature sets.  With fewer samples than dimensions (a quick evaluation of 1,000 images
    in 1,280-d or 2,048-d features) the d x d route is wasteful: the covariances have rank < n, and
    tr (S1 S2)^(1/2) is the sum of the singular values of the centred samples' n1 x n2 cross product."""
    f1, f2 = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    (n1, d), n2 = f1.shape, f2.shape[0]
    if min(n1, n2) >= d:
        return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
    if min(n1, n2) < 2:
        raise ValueError(f"need at least 2 feature vectors in each set, got {n1} and {n2}")
    x1, x2 = f1 - f1.mean(axis=0), f2 - f2.mean(axis=0)
    tr_covmean = np.linalg.svd(x1 @ x2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    diff = f1.mean(axis=0) - f2.mean(axis=0)
    return float(diff @ diff + (x1 ** 2).sum() / (n1 - 1) + (x2 ** 2).sum() / (n2 - 1) - 2 * tr_covmean)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel: (x.y / d + 1)^3."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of the squared MMD between the distributions of the rows of x and y (m each).

    The within-set terms leave out the diagonal (k(x_i, x_i) is not a pair of independent draws); the
    cross term may keep every pair, since x_i and y_j are independent for all i, j.
    """
    m = x.shape[0]
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kernel_distance(fake: np.ndarray, real: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 2020) -> tuple[float, float]:
    """KID: mean and standard deviation of the unbiased MMD^2 over random subsets (without replacement).

    ``subset_size`` is capped at the smaller set.  The subsets are drawn as torch-fidelity draws them
    (one numpy RandomState, generated set first), so the same seed gives the same number.
    """
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    m = min(subset_size, fake.shape[0], real.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.RandomState(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        f = fake[rng.choice(fake.shape[0], m, replace=False)]
        r = real[rng.choice(real.shape[0], m, replace=False)]
        mmds[i] = mmd2_unbiased(f, r)
    return float(mmds.mean()), float(mmds.std())


def inception_score(logits: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """IS: exp(E_x KL(p(y|x) || p(y))), mean and standard deviation over ``splits`` shuffled parts."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    n = logits.shape[0]
    splits = max(1, min(splits, n))
    logits = logits[np.random.RandomState(seed).permutation(n)]
    p, log_p = logits.softmax(dim=1), logits.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        part_p, part_log_p = p[i * n // splits:(i + 1) * n // splits], log_p[i * n // splits:(i + 1) * n // splits]
        marginal = part_p.mean(dim=0, keepdim=True)
        kl = (part_p * (part_log_p - marginal.log())).sum(dim=1).mean()
        scores.append(kl.exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row (the row itself is at distance 0)."""
    k = min(k, x.shape[0] - 1)
    return torch.cat([torch.cdist(part, x).kthvalue(k + 1, dim=1).values for part in x.split(chunk)])


def _count_inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each point, how many of the balls (centres, radii) contain it."""
    return torch.cat([(torch.cdist(part, centres) <= radii).sum(dim=1) for part in points.split(chunk)])


def precision_recall(fake: np.ndarray, real: np.ndarray, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): the share of generated samples inside
    the real manifold (balls to each real sample's k-th neighbour), and of real ones inside the generated."""
    fake_t, real_t = torch.as_tensor(np.asarray(fake, np.float32)), torch.as_tensor(np.asarray(real, np.float32))
    real_radii, fake_radii = _kth_neighbour_radii(real_t, k, chunk), _kth_neighbour_radii(fake_t, k, chunk)
    precision = (_count_inside(fake_t, real_t, real_radii, chunk) > 0).float().mean().item()
    recall = (_count_inside(real_t, fake_t, fake_radii, chunk) > 0).float().mean().item()
    return precision, recall


def density_coverage(fake: np.ndarray, real: np.ndarray, k: int = 5, chunk: int = 1024) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020): how many real neighbourhoods contain each generated
    sample on average (over k), and the share of real neighbourhoods that contain a generated sample."""
    fake_t, real_t = torch.as_tensor(np.asarray(fake, np.float32)), torch.as_tensor(np.asarray(real, np.float32))
    radii = _kth_neighbour_radii(real_t, k, chunk)
    k = min(k, real_t.shape[0] - 1)
    density = _count_inside(fake_t, real_t, radii, chunk).float().sum().item() / (k * fake_t.shape[0])
    nearest_fake = torch.cat([torch.cdist(part, fake_t).min(dim=1).values for part in real_t.split(chunk)])
    coverage = (nearest_fake <= radii).float().mean().item()
    return density, coverage


def copy_ratio(fake: np.ndarray, real: np.ndarray, chunk: int = 1024) -> float:
    """How close generated samples sit to the real ones, against how close real ones sit to each other:
    the median distance from a generated sample to its nearest real one over the median distance from a
    real sample to its nearest other real one.  About 1: samples as far from the set as a new real image
    would be; near 0: copies of it (FID against the training set rewards those, so read the two
    together); above 1: samples off the set (blobs, noise)."""
    fake_t, real_t = torch.as_tensor(np.asarray(fake, np.float32)), torch.as_tensor(np.asarray(real, np.float32))
    if real_t.shape[0] < 2:
        raise ValueError("copy_ratio needs at least 2 real samples (each real one's nearest other)")
    real_nn = _kth_neighbour_radii(real_t, 1, chunk).median()
    fake_nn = torch.cat([torch.cdist(part, real_t).min(dim=1).values for part in fake_t.split(chunk)]).median()
    return (fake_nn / real_nn.clamp_min(1e-12)).item()
