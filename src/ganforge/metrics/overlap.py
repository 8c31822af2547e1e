"""Whether a run's training looked through the same kind of network its scores do.

Kynkaanniemi et al. (ICLR 2023, "The Role of ImageNet Classes in Frechet Inception Distance") showed that
FID in an ImageNet classifier's feature space can fall a long way without the images getting better for
a person, when training itself sees ImageNet features: their ImageNet-pretrained FastGAN matched
StyleGAN2's FID and lost to it in human evaluation.  A run whose generator matches EfficientNet-Lite1's
feature statistics (``loss.feature_match*``) or whose discriminator judges through it
(``model.discriminator=projected``) is in that position for every score on an ImageNet classifier's
features (Inception, EfficientNet-Lite0/Lite2).  Those scores are labelled ``SHARED_LABEL`` wherever they
are shown (``ganforge eval``, ``eval.every``, the report, ``ganforge runs --compare``), and an independent
score (SWD; FD-DINOv2 where its weights are here) is shown first (docs/evaluation.md).
"""
from __future__ import annotations

import dataclasses

from ganforge.metrics.features import FEATURES, IMAGENET_FEATURES

SHARED_LABEL = "shares ImageNet features with training"
#: Report-key suffixes of the scores on ImageNet-classifier features (``fid_effnet_lite0``, ...).
IMAGENET_SUFFIXES = tuple(FEATURES[f] for f in IMAGENET_FEATURES)
#: ``loss`` keys whose non-zero value turned on a term computed on EfficientNet-Lite1's features: today's
#: ``feature_match``, and the keys of older versions, whose runs' ``config.yaml`` may still hold them.
FEATURE_MATCH_KEYS = ("feature_match", "feature_match_warmup", "feature_match_sliced", "feature_match_nearest")


def _as_dict(config) -> dict:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else (config or {})


def training_imagenet_features(config) -> list[str]:
    """What in a run's training (a :class:`~ganforge.config.Config` or its ``config.yaml`` as a dict) sees
    the images through a pretrained ImageNet network; empty when nothing does."""
    cfg = _as_dict(config)
    loss, model = cfg.get("loss") or {}, cfg.get("model") or {}
    found = []
    if any(loss.get(k) for k in FEATURE_MATCH_KEYS):
        found.append("feature matching on EfficientNet-Lite1 (loss.feature_match)")
    if model.get("discriminator") == "projected":
        found.append("the projected discriminator on EfficientNet-Lite1 (model.discriminator=projected)")
    return found


def is_imagenet_score(key: str) -> bool:
    """Whether report key ``key`` (``fid_effnet_lite0``, ``kid_std_inception``, ...) is measured on an ImageNet
    classifier's features."""
    return any(key.endswith("_" + suffix) for suffix in IMAGENET_SUFFIXES)


def is_independent_score(key: str) -> bool:
    """Whether ``key`` is a score no ImageNet classifier computes: SWD (no network) or FD-DINOv2."""
    return key.startswith("swd_") or key.endswith("_dinov2")


def shared_keys(config, keys) -> list[str]:
    """Those of ``keys`` that share ImageNet features with the run's training (none when training uses none)."""
    if not training_imagenet_features(config):
        return []
    return [k for k in keys if is_imagenet_score(k)]


def warning(config) -> str | None:
    """One line for a terminal: why this run's ImageNet-feature scores are labelled; None when they are not."""
    uses = training_imagenet_features(config)
    if not uses:
        return None
    return (f"note: scores marked '{SHARED_LABEL}' are on an ImageNet classifier's features, and this run's "
            f"training used {' and '.join(uses)}: they can improve without the images improving (Kynkaanniemi "
            "et al., ICLR 2023); --features swd (no network) or dinov2 gives an independent score")
