"""Feature matching: a term of G's loss that matches the statistics of a frozen ImageNet network's features
on G's samples to those on the training images.

Generative Feature Matching Networks (Santos et al., 2019) train a generator with no discriminator at
all: a pretrained classifier's activations, at several depths, have a mean and a variance over the real
set, and the generator is pulled until its samples' activations have the same.  The network already
knows edges, parts and textures, so the signal means something from the first step, where a
discriminator trained from scratch on a few thousand images takes most of a CPU budget to learn what
to look at.  Matching the variance as well as the mean is what keeps the samples varied: a generator
that draws one image has the right mean at best, never the right spread.  Beside the adversarial
loss it does what IMLE was meant to (lay out the set early, cheaply) without pulling towards
particular training images, so it does not make copies.

:class:`FeatureMatchTerm` (``loss.feature_match``, the weight; 0: off):

- **The network** is EfficientNet-Lite1 (:class:`~ganforge.modules.pretrained.FeatureStages`), cut at
  1/4, 1/8, 1/16 and 1/32 of its input, frozen; its input is ``loss.feature_match_size`` px.  Lite1
  because the metrics score with Lite0 and Lite2: a generator that pleased its own network's features
  without drawing better images would have to please two others to move the scores.
- **The statistics** are the mean and the variance over images of every activation (channel and
  position: where a thing is in the image counts), plus those of the image itself shrunk to 16 px (the
  colours, which ImageNet features are trained to ignore).  The real set's are worked out once when
  training starts, over the training images and their mirrors when ``data.hflip`` is on (what G
  learns from); the samples' over each generator step's batch.
- **The term** is, at each depth, the squared error of the means over the real activations' average
  variance plus that of the variances over its square (so every depth weighs alike whatever the size
  of its activations), summed over depths.

With ``loss.feature_match_sliced`` (a weight; 0: off) the term also matches the *distribution* of each
image's own features, not only each activation's mean and variance over the set.  Those moments can
all be right for a set of shapes none of which is an emoji (a mixture of half-faces and half-flags has
a face's and a flag's statistics), so the moments alone plateau: the sample's features as a whole, a
point per image, must land where real images' do.  Each image is described by every depth pooled to
a 2x2 grid (where things are, coarsely) and standardised, each depth weighing alike; at every step the
batch's descriptors and the real set's are projected on random directions and the batch's sorted
projections are pulled to the real projections' quantiles, a sliced Wasserstein distance (Deshpande
et al. 2018 train a generator with it alone).  The real descriptors are worked out at the start with
the statistics.

With ``loss.feature_match_nearest`` (a weight; 0: off) the term also pulls each sample's descriptor (the
sliced part's: every depth pooled to a 2x2 grid, standardised) to the nearest real image's, with latent
groups the nearest in the sample's own cluster.  Every other part is a statistic of the batch or of a
group: each can be right for samples none of which is an image of anything (moments of half-faces and
half-flags).  This part is one signal per sample, "look like some image of the set", which is what a
person asks of a sample before naming it.  It is the reverse of IMLE's pull (each training image pulls
its nearest sample, for coverage); the moments keep the spread.  The distance is per depth (divided by
the depths' count), so two random real images are about 2 apart.  Nearest in the pooled features is not
nearest in pixels; the copy ratio says whether samples turn into copies (docs/quality.md).

With ``loss.feature_match_gram`` (a weight; 0: off) the term also matches each image's channel
co-occurrence: at every depth, the Gram matrix of its channels over positions (what style losses
match, Gatys et al. 2016), averaged over the batch (with latent groups, over each group), against the
real set's average (each cluster's).  Mean and variance per activation are each activation's
marginals; they say nothing about which features appear *together* in one image (yellow with eyes,
stripes with a flag's colours).  On auto-v5's finished seed-0 run the moments were within 1.02-1.39x of what
a batch of real images scores against its own cluster, the Gram matrices 1.2-1.9x
(``benchmarks/feature_match_floor.py``): the moments had little left to teach, co-occurrence more.
Each depth's error is in units of the real Gram entries' average variance over images, so the depths
weigh alike.  The real averages include the mirrors when the loader mirrors (a mirror's features are
not its original's mirrored: the filters are not symmetric).

With ``loss.feature_match_average`` (a decay; 0: off) the moments' differences are moving averages
over steps instead of each batch's own (GFMN's "ADAM moving average", here a plain exponential one).
A batch of 32 is a noisy estimate of G's moments: 32 *real* images score about 0.53 on the term, most
of what a trained G scores, so once the moments are near, a batch's error is mostly its own sampling
noise and the gradient follows it.  Squaring a batch's error also rewards a smaller spread (the
expected squared error of a batch mean is the bias squared plus the variance over the batch size),
a pull towards sameness.  With the averages the gradient is the averaged error times the batch's
own derivatives: the error is measured on ``1 / (1 - decay)`` batches' worth of samples, the
gradient still comes from the current one.  The logged ``loss_fm`` stays the batch's value so runs
compare; ``loss_fm_averaged`` is the averaged errors' value.

With ``loss.feature_match_every`` (k, 1: every step) the term runs on every k-th generator step only,
at k times the weight, as StyleGAN2 runs its penalties lazily: once the moments are near, a step's
error is mostly noise (above), yet Lite1's forward and backward passes are a quarter of a step's time
on a CPU (emoji at 64 px, one thread: 0.47 s a step with the term, 0.36 s without it), so the steps
between buy the adversarial loss more steps in the same time.  The warm-up's
steps (``loss.feature_match_warmup``) are all taken.

With ``loss.feature_match_unbiased`` (true/false) the batch's estimates lose their small-batch bias,
which favours less varied samples.  The squared error of a batch mean is, in expectation, G's true
error plus the variance over the batch size; the squared error of a batch variance is the true error
plus that variance's own sampling variance (for normal data 2 var^2 / (n - 1)), so the variances' part
alone is smallest where G has (n - 1) / (n + 1) of the real variance.  With latent groups a group has
about 8 samples in a batch, so the pull is strong: a trained G's groups showed 0.57-0.95 of their
clusters' spread in the network's features, real batches 1.0 (``benchmarks/feature_match_floor.py``).
The unbiased parts are U-statistics, averages over distinct samples (pairs for the means, two disjoint
pairs for the variances; :func:`_variance_error`), in the moments and in the Gram part alike: in
expectation the term is G's own squared distance from the real statistics, and a batch of real images
scores 0.

With ``model.latent_groups`` (K) the moments are matched group by group.  A mixture of half-faces
and half-flags can have the whole set's moments at every activation; within a group of similar images
the moments say much more about each image.  When training starts the real set is split into K
clusters of equal size (balanced k-means on each image's deepest features averaged over positions,
what it shows, and its colours at 4x4, how it looks), each mirror in its original's cluster, and
each cluster's moments are worked out.  G's latent picks its group (:mod:`ganforge.modules.latent_groups`),
the step draws each batch as a few groups in blocks, and each group's share of the batch is matched
to its cluster's moments (weighted by its share; a group with one sample in the batch has no
variance and is left out).  Equal sizes make every group as likely as the images it stands for, so
sampling needs no table of frequencies.  The clusters' moments are saved with the checkpoint, so a
resumed run keeps its groups.

It needs RGB or grey images and an unconditional model: the network sees no alpha channel, and one set
of statistics would pull every class towards the whole set's (refused with the fix named).  The real
statistics are recomputed from the data on resume (deterministic), so the term has no state to save
but the moving averages and the latent groups' cluster moments (checkpointed).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.config import Config, ConfigError
from ganforge.modules.latent_groups import GroupedLatents, latent_group
from ganforge.modules.pretrained import TRAINING_VARIANT, FeatureStages
from ganforge.training.strategies import GTerm

#: The size the images' own colours are matched at.
PIXEL_SIZE = 16
#: The most training images the real statistics are worked out on (a spread sample of a larger set).
MAX_IMAGES = 10_000
#: Each depth is pooled to this grid for the per-image descriptor the sliced term compares.
DESCRIPTOR_GRID = 2
#: Random directions the sliced term projects on at each step.
SLICES = 128


class Clustering(NamedTuple):
    """How :meth:`FeatureMatchTerm.cluster` split the real set, and what the labelling of further images
    needs from it."""
    labels: torch.Tensor  # each clustered image's cluster, in the order of ``indices``
    indices: list[int]  # the clustered images' indices in the dataset (the good images of the sample)
    rows: torch.Tensor  # the clustered images' standardised rows (what the clusters were found on)
    standardise: Callable[[list[torch.Tensor]], torch.Tensor]  # an image's parts -> a row in the same space


def check(cfg: Config) -> None:
    """What the term refuses, found without building it."""
    l, d = cfg.loss, cfg.data
    if l.feature_match_every < 1:
        raise ConfigError(f"loss.feature_match_every must be >= 1 (1: every generator step; k: every k-th, at k times "
                          f"the weight), got {l.feature_match_every}")
    if not 0 <= l.feature_match_average < 1:
        raise ConfigError(f"loss.feature_match_average is a moving average's decay, in [0, 1) (0: off; 0.9 averages "
                          f"about 10 batches), got {l.feature_match_average}")
    for key in ("feature_match", "feature_match_sliced", "feature_match_gram", "feature_match_nearest"):
        if getattr(l, key) < 0:
            raise ConfigError(f"loss.{key} must be >= 0 (a weight; 0: off), got {getattr(l, key)}")
    if l.feature_match_unbiased and not (l.feature_match or l.feature_match_warmup):
        raise ConfigError("loss.feature_match_unbiased changes how the feature-matching term is measured: set "
                          "loss.feature_match (for example 1) too, or loss.feature_match_unbiased=false")
    if l.feature_match_unbiased and l.feature_match_average:
        raise ConfigError("loss.feature_match_unbiased corrects each batch's own estimates, and "
                          "loss.feature_match_average replaces them with averages over batches: use one of them")
    if l.feature_match_gram and not (l.feature_match or l.feature_match_warmup):
        raise ConfigError("loss.feature_match_gram is a part of the feature-matching term: set loss.feature_match "
                          "(for example 1) too, or loss.feature_match_gram=0")
    if not (l.feature_match or l.feature_match_warmup or l.feature_match_sliced or l.feature_match_nearest):
        return
    if l.feature_match_warmup < 0:
        raise ConfigError(f"loss.feature_match_warmup must be >= 0 (0: none), got {l.feature_match_warmup}")
    if d.channels == 4:
        raise ConfigError("loss.feature_match compares images through an ImageNet network, which sees no alpha "
                          "channel: use data.channels=3 (RGBA composited on data.background) or loss.feature_match=0")
    if cfg.model.num_classes:
        raise ConfigError("loss.feature_match matches the whole set's statistics, which would pull every class "
                          "towards all of them: use it for unconditional models (model.num_classes=0), or set "
                          "loss.feature_match=0")
    if l.feature_match_size < 32 or l.feature_match_size % 32:
        raise ConfigError(f"loss.feature_match_size={l.feature_match_size}: the network's four depths need a "
                          "multiple of 32, at least 32 (64 is cheap on a CPU, 128 sees more)")


def _squared(mean_error: torch.Tensor, var_error: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """One depth's share of the moments part: the squared errors of the means over the real set's
    average variance, and of the variances over its square."""
    return mean_error.pow(2).mean() / scale + var_error.pow(2).mean() / scale ** 2


def _moment_errors(rows: torch.Tensor, one_hot: torch.Tensor, real_mean: torch.Tensor, real_var: torch.Tensor,
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
    var_error = torch.where(n >= 4, _variance_error(centred, one_hot, n, spread, real_var), (var - real_var).pow(2))
    return mean_error.mean(-1) / scale, var_error.mean(-1) / scale ** 2


def _variance_error(centred: torch.Tensor, one_hot: torch.Tensor, n: torch.Tensor, spread: torch.Tensor,
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


def _group_shares(one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For a batch's (B, K) one-hot groups: each group's count, and its weight in the term, its share
    of the batch (0 for a group with fewer than 2 samples: no variance)."""
    counts = one_hot.sum(0)
    return counts, torch.where(counts >= 2, counts, torch.zeros_like(counts)) / one_hot.shape[0]


def grams(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each image's Gram matrix at each depth (its channels' products averaged over positions), one
    flattened row per image."""
    return [torch.einsum("bchw,bdhw->bcd", m, m).flatten(1) / (m.shape[2] * m.shape[3]) for m in maps]


def _good_images(dataset, picks, batch_size: int):
    """The images of ``picks`` that decode, in lists of up to ``batch_size``, each with its indices."""
    batch, indices = [], []
    for i in picks:
        image, _, bad = dataset[i]
        if bad == i:  # file i is broken; the source handed over the next good one, already counted
            continue
        batch.append(image)
        indices.append(i)
        if len(batch) == batch_size:
            yield batch, indices
            batch, indices = [], []
    if batch:
        yield batch, indices


def balanced_kmeans(rows: torch.Tensor, k: int, iterations: int = 30, seed: int = 0) -> torch.Tensor:
    """Labels 0..k-1 of ``rows`` in k clusters of equal size (the first ``n % k`` one larger): k-means++
    seeding (seeded: the same rows give the same clusters), then Lloyd's iterations in which each row
    goes to the nearest centre that still has room."""
    g = torch.Generator().manual_seed(seed)
    centres = rows[torch.randint(len(rows), (1,), generator=g)]
    for _ in range(k - 1):
        nearest = torch.cdist(rows, centres).min(1).values.pow(2)
        centres = torch.cat([centres, rows[torch.multinomial(nearest / nearest.sum(), 1, generator=g)]])
    labels = torch.full((len(rows),), -1, dtype=torch.long)
    for _ in range(iterations):
        new = _balanced_assignment(torch.cdist(rows, centres), k)
        if torch.equal(new, labels):
            break
        labels = new
        centres = torch.stack([rows[labels == c].mean(0) for c in range(k)])
    return labels


def _balanced_assignment(distance: torch.Tensor, k: int) -> torch.Tensor:
    """Each row to a centre, every centre taking its share: in rounds, each unplaced row asks for its
    nearest centre with room, and a centre takes the nearest of those who ask, up to its room."""
    n = distance.shape[0]
    room = torch.full((k,), n // k, dtype=torch.long)
    room[:n % k] += 1
    labels = torch.full((n,), -1, dtype=torch.long)
    while (labels < 0).any():
        free = (labels < 0).nonzero().squeeze(1)
        wanted = distance[free].masked_fill(room[None, :] == 0, float("inf")).argmin(1)
        for c in wanted.unique().tolist():
            asking = free[wanted == c]
            taken = asking[distance[asking, c].argsort()[:int(room[c])]]
            labels[taken] = c
            room[c] -= len(taken)
    return labels


class FeatureMatchTerm(GTerm):
    name = "feature_match"

    def __init__(self, weight: float, size: int, batch_size: int, nz: int, mirror: bool, warmup: int = 0,
                 sliced: float = 0.0, average: float = 0.0, every: int = 1, groups: GroupedLatents | None = None,
                 gram: float = 0.0, unbiased: bool = False, label_images: bool = False, nearest: float = 0.0):
        self.weight, self.size, self.batch_size, self.nz, self.mirror = weight, size, batch_size, nz, mirror
        # model.latent_groups_in_d, data.group_batches: each training image's cluster becomes its label in
        # the dataset, which the loader hands the step with the batch (D judges a real image under its
        # cluster; the loader draws batches in blocks of clusters, the fakes in the same groups).
        self.label_images = label_images
        self.image_groups: torch.Tensor | None = None  # the cluster of each training image, by index
        self.dataset = None  # the dataset so labelled
        # With groups, start()'s clustering of the good images, in order (a resumed run's moments and
        # labels then come from its checkpoint, which a changed folder could make differ from these).
        self.clusters: torch.Tensor | None = None
        self.unbiased = unbiased  # batch estimates without their small-batch bias (_moment_errors)
        self.groups = groups  # model.latent_groups: how G's step draws grouped latents (None: one set of moments)
        self.warmup = warmup  # generator steps in which the moments are G's whole loss, at weight 1
        self.sliced = sliced  # weight of the per-image distribution (sliced Wasserstein) part
        self.gram = gram  # weight of the channel co-occurrence (Gram matrix) part
        self.nearest = nearest  # weight of the pull of each sample's descriptor to the nearest real one
        self.every = every  # the term runs on every k-th generator step, at k times the weight
        self.average = average  # decay of the moving averages of the moments' errors (0: each batch's own)
        self.mean_error: list[torch.Tensor] = []  # per depth, moving averages of the batch's errors
        self.var_error: list[torch.Tensor] = []
        self.net: FeatureStages | None = None
        self.real_mean: list[torch.Tensor] = []  # per depth; with groups, one row per group
        self.real_var: list[torch.Tensor] = []
        self.scale: list[torch.Tensor] = []  # each depth's average real variance
        self.real_gram: list[torch.Tensor] = []  # per depth, (groups or 1, C * C): the mean Gram matrices
        self.gram_scale: list[torch.Tensor] = []  # per depth, the real Gram entries' average variance
        self.real_descriptors: torch.Tensor | None = None  # one standardised row per real image (and mirror)
        self.descriptor_groups: torch.Tensor | None = None  # with latent groups, each real descriptor's cluster
        self.depths = 0  # how many depths a descriptor has (the nearest part's distance is per depth)
        self.descriptor_mean: torch.Tensor | None = None
        self.descriptor_scale: torch.Tensor | None = None
        self.last: torch.Tensor | None = None
        self.last_sliced: torch.Tensor | None = None
        self.last_averaged: torch.Tensor | None = None
        self.last_gram: torch.Tensor | None = None
        self.last_nearest: torch.Tensor | None = None

    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations of ``x`` (images in [-1, 1]) depth by depth: the image at ``PIXEL_SIZE`` px,
        then the network's four depths."""
        prepared = self.net.prepare(x.float(), self.size)
        return [m.float() for m in (F.adaptive_avg_pool2d(prepared, PIXEL_SIZE), *self.net(prepared))]

    def statistics(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every activation of ``x`` as one row per image, depth by depth (see :meth:`maps`)."""
        return [m.flatten(1) for m in self.maps(x)]

    @staticmethod
    def raw_descriptors(maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each depth pooled to ``DESCRIPTOR_GRID`` squared positions, one row per image."""
        return [F.adaptive_avg_pool2d(m, min(DESCRIPTOR_GRID, m.shape[-1])).flatten(1) for m in maps]

    def descriptors(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """One row per image: every pooled activation standardised on the real set's, each depth's block
        scaled to a total variance of 1 so that every depth weighs alike (the real descriptors are
        standardised the same way in :meth:`start`)."""
        rows = torch.cat(self.raw_descriptors(maps), 1)
        return (rows - self.descriptor_mean) * self.descriptor_scale

    def real_images(self, dataset, device: torch.device, picks=None):
        """Batches of the good images of ``picks`` (default: a spread sample of ``MAX_IMAGES`` of a larger
        set), in [-1, 1], each with the images' indices in ``dataset``."""
        n = len(dataset)
        picks = range(0, n, max(1, n // MAX_IMAGES)) if picks is None else picks
        for batch, indices in _good_images(dataset, picks, 128):
            yield torch.stack(batch).to(device).float() / 127.5 - 1.0, indices

    @torch.no_grad()
    def start(self, dataset, device: torch.device) -> None:
        """The real set's statistics: every good image (a spread sample of ``MAX_IMAGES`` of a larger set),
        and its mirror when the loader mirrors; with latent groups, each cluster's."""
        self.net = FeatureStages(TRAINING_VARIANT).to(device)
        k = self.groups.groups if self.groups else 1
        cluster = None
        if self.groups:
            clustering = self.cluster(dataset, device, k)
            if self.label_images:
                self._label_images(dataset, device, clustering)
            cluster = self.clusters = clustering.labels.to(device)
        sums: list[torch.Tensor] | None = None
        squares: list[torch.Tensor] = []
        counts = torch.zeros(k, dtype=torch.float64, device=device)
        gram_sums: list[torch.Tensor] = []  # per depth, (k, C * C); the whole set's squares for the scale
        gram_squares: list[torch.Tensor] = []
        raw: list[torch.Tensor] = []  # the real images' descriptors, before standardising
        raw_groups: list[torch.Tensor] = []  # and their clusters
        widths: list[int] = []  # each depth's share of a descriptor
        done = 0
        for x, _ in self.real_images(dataset, device):
            group = (cluster[done:done + len(x)] if cluster is not None
                     else torch.zeros(len(x), dtype=torch.long, device=device))
            done += len(x)
            if self.mirror:
                x, group = torch.cat([x, x.flip(3)]), torch.cat([group, group])
            maps = self.maps(x)
            rows = [m.flatten(1) for m in maps]
            if self.gram:
                self._add_grams(grams(maps), group, gram_sums, gram_squares, k)
            if self.sliced or self.nearest:
                pooled = self.raw_descriptors(maps)
                raw.append(torch.cat(pooled, 1))
                raw_groups.append(group)
                widths = [p.shape[1] for p in pooled]
            # Sums in float64: the variance is a difference of two large sums.
            if sums is None:
                sums = [torch.zeros(k, r.shape[1], dtype=torch.float64, device=device) for r in rows]
                squares = [torch.zeros_like(s) for s in sums]
            for s, q, r in zip(sums, squares, rows):
                s.index_add_(0, group, r.double())
                q.index_add_(0, group, r.double().pow(2))
            counts.index_add_(0, group, torch.ones(len(x), dtype=torch.float64, device=device))
        if sums is None:
            return
        total = counts.sum()
        # Each depth's scale is the whole set's average variance, with groups too: the groups' errors
        # are in the same units as one set's.
        self.scale = [(q.sum(0) / total - (s.sum(0) / total) ** 2).clamp_min(0).mean().float().clamp_min(1e-8)
                      for s, q in zip(sums, squares)]
        c = counts.clamp_min(1)[:, None]
        means = [(s / c).float() for s in sums]
        variances = [(q / c - (s / c) ** 2).clamp_min(0).float() for s, q in zip(sums, squares)]
        self.real_mean = means if self.groups else [m[0] for m in means]
        self.real_var = variances if self.groups else [v[0] for v in variances]
        if self.sliced or self.nearest:
            self._standardise(torch.cat(raw), widths)
            self.descriptor_groups = torch.cat(raw_groups) if self.groups else None
        if self.gram:
            self.real_gram = [(s / c).float() for s in gram_sums]
            self.gram_scale = [(q / total - (s.sum(0) / total) ** 2).clamp_min(0).mean().float().clamp_min(1e-8)
                               for s, q in zip(gram_sums, gram_squares)]

    @staticmethod
    def _add_grams(rows: list[torch.Tensor], group: torch.Tensor, sums: list[torch.Tensor],
                   squares: list[torch.Tensor], k: int) -> None:
        """Add a batch's Gram rows to each of the ``k`` groups' sums (and the whole set's squares), in
        float64; the images are counted with the moments."""
        if not sums:
            sums += [torch.zeros(k, r.shape[1], dtype=torch.float64, device=r.device) for r in rows]
            squares += [torch.zeros(r.shape[1], dtype=torch.float64, device=r.device) for r in rows]
        for s, q, r in zip(sums, squares, rows):
            s.index_add_(0, group, r.double())
            q += r.double().pow(2).sum(0)

    def cluster(self, dataset, device: torch.device, k: int) -> Clustering:
        """The good images (in :meth:`real_images`' order) split into ``k`` clusters: balanced k-means on
        what each image shows (the deepest depth averaged over positions) and how it looks (its colours
        at 4x4), each part standardised and weighing alike.  Seeded: the same images, the same clusters.
        :meth:`start` keeps the labels in ``clusters``; this changes nothing on the term or the data."""
        raw, indices = [], []
        for x, picked in self.real_images(dataset, device):
            raw.append(self._cluster_parts(x))
            indices += picked
        parts = [torch.cat(p) for p in zip(*raw)]
        centre = [p.mean(0) for p in parts]
        spread = [p.std(0).clamp_min(1e-6) * p.shape[1] ** 0.5 for p in parts]

        def standardise(x_parts: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat([(p - c) / s for p, c, s in zip(x_parts, centre, spread)], 1)

        rows = standardise(parts)
        if len(rows) < 2 * k:
            raise ConfigError(f"model.latent_groups={k} needs at least 2 training images per group, and the set "
                              f"has {len(rows)}: use fewer groups (at most {len(rows) // 2})")
        return Clustering(balanced_kmeans(rows, k), indices, rows, standardise)

    def _cluster_parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """What clustering compares of each image in ``x``: its deepest features averaged over positions,
        and its colours at 4x4 (float64, on the CPU)."""
        return [self.maps(x)[-1].mean((2, 3)).double().cpu(), F.adaptive_avg_pool2d(x, 4).flatten(1).double().cpu()]

    def _label_images(self, dataset, device: torch.device, clustering: Clustering) -> None:
        """Every image's cluster as its label in ``dataset``, which the loader then hands the step (D
        judges a real image under its cluster: ``model.latent_groups_in_d``; batches come in blocks of
        clusters: ``data.group_batches``).  The clustered images keep their own; in a set larger than
        ``MAX_IMAGES``, clustered on a spread sample, every other image goes to the nearest cluster
        centre, at the cost of one pass over those images."""
        labels, indices, rows, standardise = clustering
        k = int(labels.max()) + 1
        # Broken files, in no cluster, get -1: they are never served (the loader hands the next good
        # file instead), and data.group_batches draws no block from them.
        groups = torch.full((len(dataset),), -1, dtype=torch.long)
        groups[torch.tensor(indices, dtype=torch.long)] = labels
        clustered = set(indices)
        rest = [i for i in range(len(dataset)) if i not in clustered]
        if rest:
            centres = torch.stack([rows[labels == c].mean(0) for c in range(k)])
            for x, picked in self.real_images(dataset, device, rest):
                groups[torch.tensor(picked, dtype=torch.long)] = torch.cdist(standardise(self._cluster_parts(x)),
                                                                            centres).argmin(1)
        self.image_groups = groups
        self._relabel(dataset)

    def _relabel(self, dataset) -> None:
        if not hasattr(dataset, "relabel"):
            raise ConfigError(f"model.latent_groups_in_d and data.group_batches label each training image with its "
                              f"cluster, and this source ({type(dataset).__name__}) cannot be relabelled: use a "
                              "folder, a zip or a prepared dataset, or set both to false")
        if len(self.image_groups) != len(dataset):
            raise ConfigError(f"the checkpoint labels {len(self.image_groups)} training images with their clusters, "
                              f"and the set now has {len(dataset)}: resume with the images the run was trained on, "
                              "or start a new run")
        dataset.relabel(self.image_groups)
        self.dataset = dataset

    def _standardise(self, raw: torch.Tensor, widths: list[int]) -> None:
        """Keep the real descriptors standardised, and how to standardise a sample's the same way."""
        self.descriptor_mean = raw.mean(0)
        scale = 1 / raw.std(0).clamp_min(1e-6)
        # Each depth's block divided by the root of its width: a total variance of 1 per depth, so the
        # deepest depth's 1,280 numbers do not drown the colours' 12.
        block = torch.cat([torch.full((w,), w ** -0.5, device=raw.device) for w in widths])
        self.descriptor_scale = scale * block
        self.depths = len(widths)
        self.real_descriptors = (raw - self.descriptor_mean) * self.descriptor_scale

    def sliced_distance(self, fake_descriptors: torch.Tensor) -> torch.Tensor:
        """The squared sliced Wasserstein distance from the batch's descriptors to the real set's, on
        ``SLICES`` random directions, each in units of the real projections' spread.  The batch's sorted
        projections are compared with the real projections' quantiles at the same ranks."""
        real = self.real_descriptors
        directions = F.normalize(torch.randn(real.shape[1], SLICES, device=real.device), dim=0)
        real_projected = real @ directions
        b, n = fake_descriptors.shape[0], real.shape[0]
        ranks = ((torch.arange(b, device=real.device) + 0.5) * n / b).long().clamp_max(n - 1)
        quantiles = real_projected.sort(0).values[ranks]
        fake_sorted = (fake_descriptors @ directions).sort(0).values
        return ((fake_sorted - quantiles) / real_projected.std(0).clamp_min(1e-6)).pow(2).mean()

    def nearest_distance(self, fake_descriptors: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """The mean over the batch of each sample's squared distance to the nearest real descriptor, per
        depth; with latent groups (``z`` given) the nearest of its group's cluster.  The nearest is
        chosen without gradient; the gradient pulls each sample towards it."""
        real = self.real_descriptors
        with torch.no_grad():
            distance = torch.cdist(fake_descriptors, real)
            if self.descriptor_groups is not None:  # latent groups: only the sample's own cluster
                if z is None:
                    raise ValueError("the nearest part with latent groups needs the samples' latents")
                own = latent_group(z, self.groups.groups)[:, None] == self.descriptor_groups[None]
                distance = distance.masked_fill(~own, float("inf"))
            nearest = distance.argmin(1)
        return (fake_descriptors - real[nearest]).pow(2).sum(1).mean() / max(self.depths, 1)

    def moments(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """The moments part: each depth's means and variances against the real set's."""
        total = maps[0].new_zeros(())
        every = maps[0].new_ones(maps[0].shape[0], 1)  # one group: the whole batch
        for m, real_mean, real_var, scale in zip(maps, self.real_mean, self.real_var, self.scale):
            parts = _moment_errors(m.flatten(1), every, real_mean[None], real_var[None], scale, self.unbiased)
            total = total + sum(parts).sum()
        return total

    def grouped_moments(self, maps: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """The moments part with latent groups: each group's share of the batch against its cluster's
        moments, weighted by its share (groups with fewer than 2 samples in the batch left out).  One
        pass over all groups with a one-hot matrix: no loop over groups, no sync with the host."""
        k = self.groups.groups
        one_hot = F.one_hot(latent_group(z, k), k).to(maps[0].dtype)  # (B, K)
        _, weight = _group_shares(one_hot)
        per_group = maps[0].new_zeros(k)
        for m, real_mean, real_var, scale in zip(maps, self.real_mean, self.real_var, self.scale):
            per_group = per_group + sum(_moment_errors(m.flatten(1), one_hot, real_mean, real_var, scale, self.unbiased))
        return (weight * per_group).sum()

    def gram_distance(self, maps: list[torch.Tensor], z: torch.Tensor | None) -> torch.Tensor:
        """The co-occurrence part: each group's (without groups, the batch's) mean Gram matrix against its
        cluster's (the set's), per depth in units of the real entries' variance, weighted as
        :meth:`grouped_moments` weighs groups."""
        k = self.groups.groups if self.groups else 1
        if self.groups:
            if z is None:
                raise ValueError("feature matching with latent groups needs the samples' latents")
            one_hot = F.one_hot(latent_group(z, k), k).to(maps[0].dtype)
        else:
            one_hot = maps[0].new_ones(maps[0].shape[0], 1)
        counts, weight = _group_shares(one_hot)
        per_group = maps[0].new_zeros(k)
        n = counts[:, None]
        for rows, real, scale in zip(grams(maps), self.real_gram, self.gram_scale):
            mean = one_hot.T @ rows / n.clamp_min(1)
            error = (mean - real).pow(2)
            if self.unbiased:  # less the mean's expected sampling part, as _moment_errors does
                spread = one_hot.T @ (rows - one_hot @ mean).pow(2)
                error = error - spread / ((n - 1).clamp_min(1) * n.clamp_min(1))
            per_group = per_group + error.mean(1) / scale
        return (weight * per_group).sum()

    def errors(self, maps: list[torch.Tensor]):
        """Per depth: the batch's means and variances minus the real set's, and the depth's scale."""
        for m, mean, var, scale in zip(maps, self.real_mean, self.real_var, self.scale):
            rows = m.flatten(1)
            yield rows.mean(0) - mean, rows.var(0, unbiased=False) - var, scale

    def averaged_moments(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The moments part with averaged errors: (a loss whose gradient is the averaged errors times
        the batch's derivatives, the averaged errors' value, the batch's own value as :meth:`moments`
        gives it).  Updates the averages."""
        first = not self.mean_error
        surrogate, value, batch_value = maps[0].new_zeros(()), maps[0].new_zeros(()), maps[0].new_zeros(())
        for i, (mean_error, var_error, scale) in enumerate(self.errors(maps)):
            if first:
                self.mean_error.append(mean_error.detach().clone())
                self.var_error.append(var_error.detach().clone())
            else:  # a = decay * a + (1 - decay) * error
                self.mean_error[i].lerp_(mean_error.detach(), 1 - self.average)
                self.var_error[i].lerp_(var_error.detach(), 1 - self.average)
            a_mean, a_var = self.mean_error[i], self.var_error[i]
            # d/dθ of a·e is a·de/dθ: the plain term's gradient (2e·de/dθ) with e replaced by its average.
            surrogate = surrogate + 2 * (a_mean * mean_error).mean() / scale + 2 * (a_var * var_error).mean() / scale ** 2
            value = value + _squared(a_mean, a_var, scale)
            batch_value = batch_value + _squared(mean_error.detach(), var_error.detach(), scale)
        return surrogate, value, batch_value

    def loss(self, fake: torch.Tensor) -> torch.Tensor:
        """The moments part alone, on images in [-1, 1]."""
        return self.moments(self.maps(fake))

    def __call__(self, G: nn.Module, step: int, fake: torch.Tensor | None = None,
                 z: torch.Tensor | None = None) -> torch.Tensor | None:
        self.last = self.last_sliced = self.last_averaged = self.last_gram = self.last_nearest = None
        lazy = step >= self.warmup and self.every > 1
        if lazy and step % self.every:
            return None
        every = self.every if lazy else 1  # a lazy step stands for the k - 1 steps it skipped
        weight = 1.0 if step < self.warmup else self.weight * every
        sliced_weight = self.sliced * every
        gram_weight = self.gram * every
        nearest_weight = self.nearest * every
        if not self.real_mean or not (weight or sliced_weight or gram_weight or nearest_weight):
            return None
        if fake is None:  # a G-only step has no batch of its own
            device = self.real_mean[0].device
            z = (self.groups(self.batch_size, device) if self.groups
                 else torch.randn(self.batch_size, self.nz, device=device))
            fake = G(z)
        maps = self.maps(fake)
        total = maps[0].new_zeros(())
        if weight and self.groups:
            if z is None:
                raise ValueError("feature matching with latent groups needs the samples' latents")
            moments = self.grouped_moments(maps, z)
            self.last = moments.detach()
            total = total + weight * moments
        elif weight and self.average:
            surrogate, self.last_averaged, self.last = self.averaged_moments(maps)
            total = total + weight * surrogate
        elif weight:
            moments = self.moments(maps)
            self.last = moments.detach()
            total = total + weight * moments
        if gram_weight:
            gram = self.gram_distance(maps, z)
            self.last_gram = gram.detach()
            total = total + gram_weight * gram
        descriptors = self.descriptors(maps) if sliced_weight or nearest_weight else None
        if sliced_weight:
            sliced = self.sliced_distance(descriptors)
            self.last_sliced = sliced.detach()
            total = total + sliced_weight * sliced
        if nearest_weight:
            nearest = self.nearest_distance(descriptors, z)
            self.last_nearest = nearest.detach()
            total = total + nearest_weight * nearest
        return total

    def log(self) -> dict:
        out = {} if self.last is None else {"loss_fm": self.last}
        if self.last_averaged is not None:
            out["loss_fm_averaged"] = self.last_averaged
        if self.last_gram is not None:
            out["loss_fm_gram"] = self.last_gram
        if self.last_nearest is not None:
            out["loss_fm_nearest"] = self.last_nearest
        return out if self.last_sliced is None else {**out, "loss_fm_sliced": self.last_sliced}

    def state_dict(self) -> dict:
        state = {}
        if self.mean_error:
            state.update(mean_error=[a.cpu() for a in self.mean_error], var_error=[a.cpu() for a in self.var_error])
        if self.groups and self.real_mean:
            # The clusters' moments: a resumed run keeps its groups even if the clustering would come out
            # differently (another device's rounding, a changed folder).
            state.update(group_mean=[a.cpu() for a in self.real_mean], group_var=[a.cpu() for a in self.real_var])
            if self.real_gram:
                state.update(group_gram=[a.cpu() for a in self.real_gram])
        if self.image_groups is not None:  # the images' labels go with their clusters' moments
            state.update(image_groups=self.image_groups.clone())
        return state

    def load_state_dict(self, state: dict) -> None:
        # The trainer loads a checkpoint after start(), so the averages join the real statistics' device.
        if "mean_error" in state:
            device = self.real_mean[0].device if self.real_mean else "cpu"
            self.mean_error = [a.clone().to(device) for a in state["mean_error"]]
            self.var_error = [a.clone().to(device) for a in state["var_error"]]
        if "group_mean" in state and self.groups:
            device = self.real_mean[0].device if self.real_mean else "cpu"
            saved = state["group_mean"]
            if self.real_mean and [a.shape for a in saved] != [a.shape for a in self.real_mean]:
                raise ConfigError(f"the checkpoint's feature-matching groups have shapes {[tuple(a.shape) for a in saved]}, "
                                  f"this run's {[tuple(a.shape) for a in self.real_mean]}: resume with the config the "
                                  "run was saved with (its config.yaml)")
            self.real_mean = [a.clone().to(device) for a in saved]
            self.real_var = [a.clone().to(device) for a in state["group_var"]]
            if "group_gram" in state and self.gram:
                self.real_gram = [a.clone().to(device) for a in state["group_gram"]]
        if "image_groups" in state and self.label_images:
            self.image_groups = state["image_groups"].clone()
            if self.dataset is not None:
                self._relabel(self.dataset)
