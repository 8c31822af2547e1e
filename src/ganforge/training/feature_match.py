"""Feature matching (``loss.feature_match``): a term of G's loss that matches the statistics of a frozen
ImageNet network's features (EfficientNet-Lite1) on G's samples to those on the training images, with
latent groups one cluster's statistics per group.  What each part measures and why: docs/strategies.md."""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.config import Config, ConfigError
from ganforge.modules.latent_groups import GroupedLatents, latent_group
from ganforge.modules.pretrained import TRAINING_VARIANT, FeatureStages
from ganforge.training.clusters import real_batches
from ganforge.training.feature_stats import grams, group_shares, moment_errors
from ganforge.training.strategies import GTerm

#: The size the images' own colours are matched at.
PIXEL_SIZE = 16


def check(cfg: Config) -> None:
    """What the term refuses, found without building it."""
    l, d = cfg.loss, cfg.data
    for key in ("feature_match", "feature_match_gram"):
        if getattr(l, key) < 0:
            raise ConfigError(f"loss.{key} must be >= 0 (a weight; 0: off), got {getattr(l, key)}")
    if l.feature_match_unbiased and not l.feature_match:
        raise ConfigError("loss.feature_match_unbiased changes how the feature-matching term is measured: set "
                          "loss.feature_match (for example 1) too, or loss.feature_match_unbiased=false")
    if l.feature_match_gram and not l.feature_match:
        raise ConfigError("loss.feature_match_gram is a part of the feature-matching term: set loss.feature_match "
                          "(for example 1) too, or loss.feature_match_gram=0")
    if not l.feature_match:
        return
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


class Part(NamedTuple):
    """One weighted part of the term: ``measure(maps, one_hot)`` on a batch's activations and its (B, K)
    one-hot groups (one column without groups), logged as ``key``."""
    key: str
    weight: float
    measure: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor]


class FeatureMatchTerm(GTerm):
    name = "feature_match"

    def __init__(self, weight: float, size: int, mirror: bool, groups: GroupedLatents | None = None,
                 gram: float = 0.0, unbiased: bool = False):
        self.size, self.mirror = size, mirror
        self.groups = groups  # model.latent_groups: how G's step draws grouped latents (None: one set of statistics)
        self.unbiased = unbiased  # batch estimates without their small-batch bias (feature_stats.moment_errors)
        self.gram = gram
        self.parts = [Part("loss_fm", weight, self.moments), Part("loss_fm_gram", gram, self.gram_distance)]
        self.parts = [part for part in self.parts if part.weight]
        # With groups, start()'s clustering of the good images, in order (a resumed run's moments then
        # come from its checkpoint, which a changed folder could make differ from these).
        self.clusters: torch.Tensor | None = None
        self.net: FeatureStages | None = None
        self.real_mean: list[torch.Tensor] = []  # per depth, one row per group (one row without groups)
        self.real_var: list[torch.Tensor] = []
        self.scale: list[torch.Tensor] = []  # each depth's average real variance
        self.real_gram: list[torch.Tensor] = []  # per depth, (groups, C * C): the mean Gram matrices
        self.gram_scale: list[torch.Tensor] = []  # per depth, the real Gram entries' average variance
        self.last: dict[str, torch.Tensor] = {}

    def maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations of ``x`` (images in [-1, 1]) depth by depth: the image at ``PIXEL_SIZE`` px,
        then the network's four depths."""
        prepared = self.net.prepare(x.float(), self.size)
        return [m.float() for m in (F.adaptive_avg_pool2d(prepared, PIXEL_SIZE), *self.net(prepared))]

    def statistics(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every activation of ``x`` as one row per image, depth by depth (see :meth:`maps`)."""
        return [m.flatten(1) for m in self.maps(x)]

    def one_hot(self, z: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
        """The (n, K) one-hot groups of the latents ``z`` (one column of ones without latent groups)."""
        if not self.groups:
            return like.new_ones(n, 1)
        if z is None:
            raise ValueError("feature matching with latent groups needs the samples' latents")
        return F.one_hot(latent_group(z, self.groups.groups), self.groups.groups).to(like.dtype)

    @torch.no_grad()
    def start(self, dataset, device: torch.device, clusters: torch.Tensor | None = None) -> None:
        """The real set's statistics: every good image (a spread sample of a larger set), and its mirror
        when the loader mirrors; with latent groups, each cluster's (``clusters``: each good image's,
        from :func:`~ganforge.training.clusters.latent_clusters`)."""
        self.net = FeatureStages(TRAINING_VARIANT).to(device)
        k = self.groups.groups if self.groups else 1
        if self.groups and clusters is None:
            raise ValueError("feature matching with latent groups needs the images' clusters")
        cluster = self.clusters = clusters.to(device) if self.groups else None
        sums: list[torch.Tensor] | None = None
        squares: list[torch.Tensor] = []
        counts = torch.zeros(k, dtype=torch.float64, device=device)
        gram_sums: list[torch.Tensor] = []  # per depth, (k, C * C); the whole set's squares for the scale
        gram_squares: list[torch.Tensor] = []
        done = 0
        for x, _, _ in real_batches(dataset, device):
            group = (cluster[done:done + len(x)] if cluster is not None
                     else torch.zeros(len(x), dtype=torch.long, device=device))
            done += len(x)
            if self.mirror:
                x, group = torch.cat([x, x.flip(3)]), torch.cat([group, group])
            maps = self.maps(x)
            rows = [m.flatten(1) for m in maps]
            if self.gram:
                self._add_grams(grams(maps), group, gram_sums, gram_squares, k)
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
        self.real_mean = [(s / c).float() for s in sums]
        self.real_var = [(q / c - (s / c) ** 2).clamp_min(0).float() for s, q in zip(sums, squares)]
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

    def moments(self, maps: list[torch.Tensor], one_hot: torch.Tensor) -> torch.Tensor:
        """The moments part: each group's (without groups, the batch's) means and variances against its
        cluster's (the set's), weighted by its share of the batch (groups with fewer than 2 samples in the
        batch left out).  One pass over all groups with a one-hot matrix: no loop, no sync with the host."""
        _, weight = group_shares(one_hot)
        per_group = maps[0].new_zeros(one_hot.shape[1])
        for m, real_mean, real_var, scale in zip(maps, self.real_mean, self.real_var, self.scale):
            per_group = per_group + sum(moment_errors(m.flatten(1), one_hot, real_mean, real_var, scale, self.unbiased))
        return (weight * per_group).sum()

    def gram_distance(self, maps: list[torch.Tensor], one_hot: torch.Tensor) -> torch.Tensor:
        """The co-occurrence part: each group's (without groups, the batch's) mean Gram matrix against its
        cluster's (the set's), per depth in units of the real entries' variance, weighted as
        :meth:`moments` weighs groups."""
        counts, weight = group_shares(one_hot)
        per_group = maps[0].new_zeros(one_hot.shape[1])
        n = counts[:, None]
        for rows, real, scale in zip(grams(maps), self.real_gram, self.gram_scale):
            mean = one_hot.T @ rows / n.clamp_min(1)
            error = (mean - real).pow(2)
            if self.unbiased:  # less the mean's expected sampling part, as moment_errors does
                spread = one_hot.T @ (rows - one_hot @ mean).pow(2)
                error = error - spread / ((n - 1).clamp_min(1) * n.clamp_min(1))
            per_group = per_group + error.mean(1) / scale
        return (weight * per_group).sum()

    def loss(self, fake: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """The moments part alone, on images in [-1, 1] (with latent groups, of the latents ``z``)."""
        maps = self.maps(fake)
        return self.moments(maps, self.one_hot(z, len(fake), maps[0]))

    def __call__(self, G: nn.Module, step: int, fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor | None:
        self.last = {}
        if not self.real_mean:
            return None
        maps = self.maps(fake)
        one_hot = self.one_hot(z, len(fake), maps[0])
        total = maps[0].new_zeros(())
        for part in self.parts:
            value = part.measure(maps, one_hot)
            self.last[part.key] = value.detach()
            total = total + part.weight * value
        return total

    def log(self) -> dict:
        return dict(self.last)

    def state_dict(self) -> dict:
        if not (self.groups and self.real_mean):
            return {}
        # The clusters' moments: a resumed run keeps its groups even if the clustering would come out
        # differently (another device's rounding, a changed folder).
        state = dict(group_mean=[a.cpu() for a in self.real_mean], group_var=[a.cpu() for a in self.real_var])
        if self.real_gram:
            state.update(group_gram=[a.cpu() for a in self.real_gram])
        return state

    def load_state_dict(self, state: dict) -> None:
        # The trainer loads a checkpoint after start(), so the saved moments join the real statistics' device.
        if "group_mean" not in state or not self.groups:
            return
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
