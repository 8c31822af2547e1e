"""The feature-matching term's statistics of a batch against the real set's, group by group: the moments'
squared errors (plain, or unbiased U-statistics) and each image's Gram matrices.  Pure tensor maths,
no network and no data (:mod:`ganforge.training.feature_match` uses it)."""
from __future__ import annotations

import torch


def moment_errors(rows: torch.Tensor, one_hot: torch.Tensor, real_mean: torch.Tensor, real_var: torch.Tensor,
                   scale: torch.Tensor, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One depth's share of the moments part for each group of a batch (``rows``: (B, D) activations,
    ``one_hot``: (B, K) groups; one column for a batch without groups), as two parts averaged over
    activations: the squared error of the group's means over the real set's average variance, and that
    of its variances over its square.

    The plain estimates are biased in a small group, towards less spread.  The squared error of a mean
    of n samples is, in expectation, the true error plus the variance over n; the squared error of
    their variance is the true error plus that variance's own sampling variance, which for normal data
    is 2 var^2 / (n - 1): minimising it alone gives G (n - 1) / (n + 1) of the real variance, 0.78 for
    the 8 samples a latent group has in a batch.  With ``unbiased`` both parts are U-statistics, whose
    expectation is exactly the true squared error: averages over distinct samples, pairs for the means
    and two disjoint pairs for the variances (a group of fewer than 4 samples keeps the plain square of
    its unbiased variance), so that a batch of real images scores 0 in expectation."""
    n = one_hot.sum(0)[:, None]  # (K, 1)
    mean = one_hot.T @ rows / n.clamp_min(1)
    centred = rows - one_hot @ mean
    spread = one_hot.T @ centred.pow(2)  # each group's sum of squared deviations
    if not unbiased:
        var = spread / n.clamp_min(1)
        return (mean - real_mean).pow(2).mean(-1) / scale, (var - real_var).pow(2).mean(-1) / scale ** 2
    var = spread / (n - 1).clamp_min(1)
    mean_error = (mean - real_mean).pow(2) - var / n.clamp_min(1)
    var_error = torch.where(n >= 4, variance_error(centred, one_hot, n, spread, real_var), (var - real_var).pow(2))
    return mean_error.mean(-1) / scale, var_error.mean(-1) / scale ** 2


def variance_error(centred: torch.Tensor, one_hot: torch.Tensor, n: torch.Tensor, spread: torch.Tensor,
                    target: torch.Tensor) -> torch.Tensor:
    """Per group and activation, an unbiased estimate of (the group's variance - ``target``)^2: the
    average, over ordered tuples of 4 distinct samples (i, j, k, l), of h(i, j) h(k, l) with
    h(i, j) = (x_i - x_j)^2 / 2 - target, each factor an unbiased estimate of the difference and the two
    independent.  Worked out from power sums of the deviations from the group's mean (h only sees
    differences): with H the sum of h over ordered pairs, Q that of h^2 and R_i the sum over j of
    h(i, j), the sum over distinct 4-tuples is H^2 + 2 Q - 4 sum_i R_i^2."""
    s2, s4, target = spread, one_hot.T @ centred.pow(4), target.expand_as(spread)
    pairs = n * (n - 1)
    total = n * s2 - target * pairs  # H
    squares = (2 * n * s4 + 6 * s2.pow(2)) / 4 - 2 * target * n * s2 + target.pow(2) * pairs  # Q
    own_n, own_s2, own_target = one_hot @ n, one_hot @ s2, one_hot @ target
    per_sample = (own_n * centred.pow(2) + own_s2) / 2 - own_target * (own_n - 1)  # R_i
    tuples = pairs * (n - 2) * (n - 3)
    return (total.pow(2) + 2 * squares - 4 * one_hot.T @ per_sample.pow(2)) / tuples.clamp_min(1)


def group_shares(one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a batch's (B, K) one-hot groups: each group's count, and its weight in the term, its share
    of the batch (0 for a group with fewer than 2 samples: no variance)."""
    counts = one_hot.sum(0)
    return counts, torch.where(counts >= 2, counts, torch.zeros_like(counts)) / one_hot.shape[0]


def grams(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each image's Gram matrix at each depth (its channels' products averaged over positions), one
    flattened row per image."""
    return [torch.einsum("bchw,bdhw->bcd", m, m).flatten(1) / (m.shape[2] * m.shape[3]) for m in maps]
