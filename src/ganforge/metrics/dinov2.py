"""DINOv2 ViT-S/14 features for FD-DINOv2 (``--features dinov2``).

Stein et al. (NeurIPS 2023, "Exposing flaws of generative model evaluation metrics and their unfair
treatment of diffusion models") found that the Frechet distance in DINOv2's feature space agrees with
human judgement far better than Inception's, and recommend FD-DINOv2.  DINOv2 learnt without labels
(self-supervised, on its own curated images), so it does not share the ImageNet-classifier features that
``loss.feature_match`` and ``model.discriminator=projected`` train against (docs/evaluation.md).

- The network: ``timm``'s ``vit_small_patch14_dinov2`` (extra ``metrics``), built for 224 x 224 input;
  the feature is the class token after the final norm (384-d), what DINOv2's own model returns.
- The weights: Meta's official checkpoint ``dinov2_vits14_pretrain.pth`` (88 MB), looked for in torch
  hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints/``, where ``torch.hub`` keeps it) and downloaded
  there on first use unless ``GANFORGE_OFFLINE=1``; offline, the error names the file and the folder.
  It is loaded with ``weights_only=True`` (tensors only, never pickled code) and converted to timm's
  layout by timm's own converter (the position embeddings resized from 37 x 37 to 16 x 16 patches).
- Images: resized to 224 x 224 (bicubic, antialiased), scaled to [0, 1] and normalised with the ImageNet
  mean and standard deviation, as DINOv2 was trained and as Stein et al.'s code feeds it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.transforms.v2 import functional as TF

from ganforge.config import ConfigError
from ganforge.metrics.imagenet_input import ImageNetExtractor

WEIGHTS_FILE = "dinov2_vits14_pretrain.pth"
WEIGHTS_URL = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/{WEIGHTS_FILE}"
TIMM_MODEL = "vit_small_patch14_dinov2"
INPUT_SIZE = 224


def weights_dir() -> Path:
    """Where the weights are looked for and downloaded to: torch hub's checkpoint folder."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_path() -> Path:
    return weights_dir() / WEIGHTS_FILE


def have_weights() -> bool:
    """Whether FD-DINOv2 can be computed here without a download."""
    return weights_path().is_file()


def _missing_message(reason: str) -> str:
    return (f"the DINOv2 ViT-S/14 weights are needed for --features dinov2 and {reason}.\n"
            f"  Put {WEIGHTS_FILE} (88 MB, Meta's official DINOv2 checkpoint) in\n"
            f"    {weights_dir()}/\n"
            f"  It is at {WEIGHTS_URL}\n"
            "  Or use --features swd, which needs no network and works offline.")


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("--features dinov2 needs the optional extra 'metrics': pip install 'ganforge[metrics]' "
                          "(timm, for the ViT), or use --features swd") from None
    return timm


def find_weights() -> Path:
    """The weights file, downloaded into torch hub's folder if allowed and needed; ConfigError saying what to do
    if not."""
    path = weights_path()
    if path.is_file():
        return path
    if os.environ.get("GANFORGE_OFFLINE", "") not in ("", "0"):
        raise ConfigError(_missing_message(f"are not in {path.parent}/ (GANFORGE_OFFLINE is set, so no download)"))
    from ganforge.metrics.inception import download_weights
    return download_weights(WEIGHTS_URL, path, _missing_message)


def check_available() -> Path:
    """That :class:`DinoV2Features` can be built here (timm installed, the weights found or downloaded)."""
    _timm()
    return find_weights()


def build_vit(state_dict: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """The ViT-S/14 at 224 px; with ``state_dict`` (official DINOv2 keys) its weights, else timm's random ones."""
    timm = _timm()
    from timm.models.vision_transformer import checkpoint_filter_fn
    vit = timm.create_model(TIMM_MODEL, pretrained=False, img_size=INPUT_SIZE, num_classes=0)
    if state_dict is not None:
        # DINOv2 interpolates its position embeddings without antialiasing: so does the conversion here.
        vit.load_state_dict(checkpoint_filter_fn(state_dict, vit, antialias=False), strict=True)
    return vit


class DinoV2Features(ImageNetExtractor):
    name = "dinov2"
    dims = 384
    input_size = INPUT_SIZE
    interpolation = TF.InterpolationMode.BICUBIC

    def __init__(self):
        super().__init__()
        path = find_weights()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.net = build_vit(state)
        except Exception as e:  # noqa: BLE001 - a broken, hostile or foreign file: say which and why
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{path} could not be loaded as DINOv2 ViT-S/14 weights ({first}); it should be "
                              f"{WEIGHTS_FILE} from {WEIGHTS_URL} (ganforge loads only tensors, never pickled "
                              "code): delete it to download it again") from None
        self.weights_id = f"{path.name}-{path.stat().st_size}"
        self.freeze()

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net(self.imagenet_input(images))  # num_classes=0: the normed class token
        return features.float(), features.new_zeros(features.shape[0], 0)
