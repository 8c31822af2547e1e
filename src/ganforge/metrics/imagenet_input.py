"""What the ImageNet-trained feature networks share: uint8 RGB images resized to the network's input
size and normalised with the ImageNet mean and standard deviation, in a frozen module."""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.transforms.v2 import functional as TF

from ganforge.modules.pretrained import IMAGENET_MEAN, IMAGENET_STD


class ImageNetExtractor(nn.Module):
    """Base of a frozen feature network: :meth:`imagenet_input` turns a batch of uint8 RGB images into its
    input (``input_size`` px, resized with ``interpolation``); subclasses build ``self.net`` and call
    :meth:`freeze` once they have."""

    input_size = 224
    interpolation = TF.InterpolationMode.BILINEAR

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def imagenet_input(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.mean.device).float().div(255.0)
        x = TF.resize(x, [self.input_size, self.input_size], interpolation=self.interpolation, antialias=True)
        return (x.clamp(0, 1) - self.mean) / self.std  # bicubic overshoots [0, 1] at edges
