"""Evaluating a generator (or a set of images) against real data: features, then scores.

Report keys name the feature extractor: ``fid_inception`` and ``fid_effnet_lite0`` are different
numbers and never share a name.  For each metric asked for:

- ``fid``: ``fid_<f>``
- ``kid``: ``kid_<f>`` (mean over 100 subsets of min(1000, n / 2)) and ``kid_std_<f>``
- ``is``:  ``is_<f>`` and ``is_std_<f>`` (generated images only; 10 splits, fewer below 1,000 images)
- ``pr``:  ``precision_<f>``, ``recall_<f>``, ``density_<f>``, ``coverage_<f>``

``--features swd`` is a metric in itself (no network, no embedding): whatever the metrics asked for, it
gives ``swd_<res>px`` for each pyramid level and ``swd_mean`` (:mod:`ganforge.metrics.swd`).
``--features dinov2`` has no classifier, so no Inception Score: its ``fid_dinov2`` is Stein et al.'s FD-DINOv2.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn

from ganforge.config import Config, ConfigError
from ganforge.metrics import scores, swd
from ganforge.metrics.features import (NO_CLASSIFIER, RGBA_BACKGROUND, build_extractor, check_features,  # noqa: F401
                                       extract_features, report_suffix, to_uint8_rgb)
from ganforge.metrics.stats_cache import real_batches as cached_real_batches
from ganforge.metrics.stats_cache import real_features as cached_real_features
from ganforge.metrics.stats_cache import real_subset

METRICS = ("fid", "kid", "is", "pr", "copy")
#: Names ``eval.best`` accepts -> (the metric that computes it, whether higher is better).
BEST_CHOICES = {"fid": ("fid", False), "kid": ("kid", False), "is": ("is", True), "precision": ("pr", True),
                "recall": ("pr", True), "density": ("pr", True), "coverage": ("pr", True)}
#: ``eval.best`` values that, with ``eval.features=swd``, pick the checkpoint of the lowest ``swd_mean``.
SWD_BEST = ("fid", "kid", "swd")
#: KID's subset size (Binkowski et al.; torch-fidelity's default), at most half the smaller set.
KID_SUBSET = 1000
#: Fewest generated images per Inception Score split.
IS_MIN_SPLIT = 100
#: Seed of the latents every evaluation of a generator uses, unless told otherwise.
EVAL_SEED = 0


def check_metrics(metrics: Iterable[str] | str) -> list[str]:
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    out = [m.strip().lower() for m in metrics]
    for m in out:
        if m not in METRICS:
            raise ConfigError(f"unknown metric '{m}' (eval.metrics / --metrics); choose from: {', '.join(METRICS)}")
    if not out:
        raise ConfigError(f"no metrics asked for; choose from: {', '.join(METRICS)}")
    return list(dict.fromkeys(out))


def metrics_for(features: str, metrics: Iterable[str] | str) -> list[str]:
    """``metrics`` checked against what extractor ``features`` can give: an extractor without a classifier
    (``dinov2``) has no Inception Score."""
    metrics = check_metrics(metrics)
    if "is" in metrics and check_features(features) in NO_CLASSIFIER:
        raise ConfigError(f"--features {features} has no classifier, and the Inception Score needs one: leave 'is' "
                          "out of --metrics / eval.metrics, or use --features inception or effnet-lite0")
    return metrics


def best_key(best: str, features: str) -> tuple[str, bool]:
    """The report key that ``eval.best`` names, and whether higher is better."""
    if features == "swd":
        # SWD is its own metric: the best checkpoint is the one whose images are nearest the real ones.
        if best not in SWD_BEST:
            raise ConfigError(f"eval.best={best} needs an embedding of the images, which eval.features=swd has not; "
                              f"with swd the best checkpoint has the lowest swd_mean: set eval.best=fid (or swd)")
        return "swd_mean", False
    if best not in BEST_CHOICES:
        raise ConfigError(f"eval.best '{best}' is not a metric that can pick a checkpoint; choose from: "
                          f"{', '.join(BEST_CHOICES)}")
    return f"{best}_{report_suffix(features)}", BEST_CHOICES[best][1]


def check_eval_config(cfg: Config) -> None:
    """eval.* settings that cannot work, before any training or evaluation starts."""
    e = cfg.eval
    metrics = metrics_for(e.features, e.metrics)
    best_key(e.best, e.features)
    if e.features != "swd" and BEST_CHOICES[e.best][0] not in metrics:
        raise ConfigError(f"eval.best={e.best} picks the best checkpoint, but eval.metrics ({','.join(metrics)}) "
                          f"does not compute it: add {BEST_CHOICES[e.best][0]} to eval.metrics")
    if e.n < 2:
        raise ConfigError(f"eval.n must be at least 2 generated images, got {e.n}")


# --------------------------------------------------------------------------------------------------
# Generated images (converting and extracting features: ganforge.metrics.features)
# --------------------------------------------------------------------------------------------------
def generated_batches(G: nn.Module, nz: int, n: int, batch_size: int, num_classes: int = 0, seed: int = EVAL_SEED,
                      device: str | torch.device = "cpu") -> Iterator[torch.Tensor]:
    """``n`` images from G for latents drawn with ``seed``: the same images every time.

    Batches are the training batch size, so BatchNorm generators see batch statistics like those they
    learned with (``ganforge.sampling.generate``'s default, which leaves the model untouched).
    """
    from ganforge.sampling import generate
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, nz, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g) if num_classes else None
    for i in range(0, n, batch_size):
        y = None if labels is None else labels[i:i + batch_size].to(device)
        yield generate(G, z[i:i + batch_size].to(device), y, chunk=batch_size)


def score_features(fake_features: np.ndarray, fake_logits: np.ndarray | None, real_features: np.ndarray | None,
                   metrics: Iterable[str], features: str) -> dict[str, float]:
    """Every asked-for metric from features already extracted."""
    suffix = report_suffix(features)
    out: dict[str, float] = {}
    for metric in metrics_for(features, metrics):
        if metric == "fid":
            out[f"fid_{suffix}"] = scores.fid_from_features(fake_features, real_features)
        elif metric == "kid":
            # Subsets of 1,000 as torch-fidelity and the paper, but at most half the images: a subset as
            # large as the set is the set itself every time, and the spread would say nothing.
            n_min = min(fake_features.shape[0], real_features.shape[0])
            out[f"kid_{suffix}"], out[f"kid_std_{suffix}"] = scores.kernel_distance(
                fake_features, real_features, subset_size=max(2, min(KID_SUBSET, n_min // 2)))
        elif metric == "is":
            # The usual 10 splits, but never under IS_MIN_SPLIT images each: a split of a few images
            # scores about 1 whatever the generator (its marginal is its own few predictions).
            splits = max(1, min(10, fake_logits.shape[0] // IS_MIN_SPLIT))
            out[f"is_{suffix}"], out[f"is_std_{suffix}"] = scores.inception_score(fake_logits, splits=splits)
        elif metric == "pr":
            out[f"precision_{suffix}"], out[f"recall_{suffix}"] = scores.precision_recall(fake_features, real_features)
            out[f"density_{suffix}"], out[f"coverage_{suffix}"] = scores.density_coverage(fake_features, real_features)
        elif metric == "copy":
            out[f"copy_ratio_{suffix}"] = scores.copy_ratio(fake_features, real_features)
    return {k: float(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------------
# The one call
# --------------------------------------------------------------------------------------------------
def _config_for(real, fake_shape: tuple[int, ...] | None, cfg: Config | None) -> Config:
    """The data settings real images are read with: ``cfg``'s, with ``real`` as the source."""
    if isinstance(real, Config):
        return real
    if cfg is None:
        if fake_shape is None:
            raise ConfigError("evaluate(): pass cfg= to say the image size and channels of the real data")
        # Only the data settings matter here, so any size the images have is fine (no model is built).
        cfg = Config()
        cfg.data.image_size, cfg.data.channels = fake_shape[-1], fake_shape[1] if fake_shape[1] in (1, 4) else 3
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=str(real)))


def evaluate(fake, real, metrics: Iterable[str] | str = ("fid",), features: str = "effnet-lite0", n: int = 1000, *,
             cfg: Config | None = None, seed: int = EVAL_SEED, device: str | torch.device = "cpu",
             inception_weights: str = "", batch_size: int = 50, use_cache: bool = True,
             dataset=None) -> dict[str, float]:
    """Scores of generated images against real ones.

    ``fake``: a generator (``G(z, y)``), a run directory or checkpoint/generator file (its EMA weights
    when it has them), or a tensor of images (N, C, H, W), floats in [-1, 1] or uint8.
    ``real``: a data source (folder, zip, named dataset) read with ``cfg``'s data settings (by default the
    generated images' size and channels), a :class:`Config`, or a tensor of images.
    ``n``: generated images (the first ``n`` of a tensor); as many real ones are used, or all when fewer: the
    same seeded subset of a tensor of reals as of a source (:func:`~ganforge.metrics.stats_cache.real_subset`).
    A generator is sampled with latents from ``seed``, so the same generator always gets the same score.

    ``dataset``: the real source already opened with those settings (the trainer's), to skip reopening it.

    Returns the report keys of :mod:`ganforge.metrics.evaluate` plus ``n_generated`` and ``n_real``.
    """
    metrics = metrics_for(features, metrics)
    if n < 2:
        raise ConfigError(f"evaluating needs at least 2 generated images, got n={n}")
    if isinstance(fake, (str, Path)):
        from ganforge.sampling import load_generator
        fake, loaded_cfg, _ = load_generator(fake, device=device)
        cfg = cfg or loaded_cfg
    if isinstance(fake, nn.Module):
        nz = cfg.model.nz if cfg is not None else getattr(fake, "nz", None)
        if nz is None:
            raise ConfigError("evaluate(): pass cfg= (the run's config) to say the generator's latent size")
        num_classes = cfg.model.num_classes if cfg is not None else 0
        bs = cfg.data.batch_size if cfg is not None else batch_size
        fake_shape = None
        fake_batches = generated_batches(fake, nz, n, bs, num_classes, seed, device)
    elif isinstance(fake, torch.Tensor):
        images = fake[:n]
        fake_shape = tuple(images.shape)
        fake_batches = images.split(batch_size)
    else:
        raise ConfigError(f"evaluate(): cannot evaluate a {type(fake).__name__}; give a generator, a run or "
                          "checkpoint path, or a tensor of images")

    def real_batches() -> Iterable[torch.Tensor]:
        if isinstance(real, torch.Tensor):  # the same rule as for a source: a seeded subset, not the first n
            return real[real_subset(real.shape[0], n)].split(batch_size)
        return cached_real_batches(_config_for(real, fake_shape, cfg), n, batch_size, dataset=dataset)

    if features == "swd":  # patches of the images themselves: no extractor, no feature cache
        return score_swd(fake_batches, real_batches(), n)
    extractor = build_extractor(features, device, inception_weights)
    fake_features, fake_logits = extract_features(extractor, fake_batches)
    real_features = None
    if any(m != "is" for m in metrics):
        if isinstance(real, torch.Tensor):
            real_features, _ = extract_features(extractor, real_batches())
        else:
            real_cfg = _config_for(real, fake_shape, cfg)
            real_features = cached_real_features(real_cfg, extractor, n, batch_size, dataset=dataset,
                                                 use_cache=use_cache)
    out = score_features(fake_features, fake_logits, real_features, metrics, features)
    out["n_generated"] = int(fake_features.shape[0])
    out["n_real"] = int(real_features.shape[0]) if real_features is not None else 0
    return out


def score_swd(fake_batches: Iterable[torch.Tensor], real_batches: Iterable[torch.Tensor], n: int) -> dict[str, float]:
    """``--features swd``: the sliced Wasserstein distance of the two sets' pyramid patches, per level and
    their mean (:mod:`ganforge.metrics.swd`), plus ``n_generated`` and ``n_real``."""
    real = swd.descriptors((to_uint8_rgb(b) for b in real_batches), n)
    if real.count < 2:
        raise ConfigError(f"SWD needs at least 2 real images, got {real.count}")
    # SWD compares equal numbers of patches: no more fake images than the real set has are made or read.
    fake = swd.descriptors((to_uint8_rgb(b) for b in fake_batches), n, limit=real.count)
    if fake.count < 2:
        raise ConfigError(f"SWD needs at least 2 images on each side, got {fake.count} to score")
    out = swd.swd_scores(fake, real)
    out["n_generated"], out["n_real"] = fake.count, real.count
    return out


def source_config(source: str, image_size: int) -> Config:
    """The data settings a set of images is read with when scored on its own (``ganforge eval --real A
    --fake B``): RGB (grey repeated, as the extractors see it anyway), all images, at ``image_size``."""
    base = Config()
    data = dataclasses.replace(base.data, source=str(source), image_size=int(image_size), channels=3, limit=0,
                               labels=False, num_workers=0)
    return dataclasses.replace(base, data=data)


def evaluate_sources(fake: str, real: str, image_size: int, metrics: Iterable[str] | str = ("fid",),
                     features: str = "effnet-lite0", n: int = 1000, *, device: str | torch.device = "cpu",
                     inception_weights: str = "", batch_size: int = 50, use_cache: bool = True) -> dict[str, float]:
    """Scores of the images of one source (folder, zip, prepared set, named set) against another's, both
    read at ``image_size`` and through the same statistics cache as a generator's real images: the
    same extractor, the same subset of ``n`` images (all when fewer), the same report keys as
    :func:`evaluate`.  ``n_generated`` counts the images of ``fake``."""

    metrics = metrics_for(features, metrics)
    if n < 2:
        raise ConfigError(f"evaluating needs at least 2 images, got n={n}")
    if features == "swd":
        return score_swd(cached_real_batches(source_config(fake, image_size), n, batch_size),
                         cached_real_batches(source_config(real, image_size), n, batch_size), n)
    extractor = build_extractor(features, device, inception_weights)
    fake_features, fake_logits = cached_real_features(source_config(fake, image_size), extractor, n, batch_size,
                                                 use_cache=use_cache, logits=True)
    real_features = None
    if any(m != "is" for m in metrics):
        real_features = cached_real_features(source_config(real, image_size), extractor, n, batch_size,
                                        use_cache=use_cache)
    if fake_features.shape[0] < 2 or (real_features is not None and real_features.shape[0] < 2):
        which = fake if fake_features.shape[0] < 2 else real
        raise ConfigError(f"{which} holds fewer than 2 images: scoring needs at least 2 on each side")
    out = score_features(fake_features, fake_logits, real_features, metrics, features)
    out["n_generated"] = int(fake_features.shape[0])
    out["n_real"] = int(real_features.shape[0]) if real_features is not None else 0
    return out
