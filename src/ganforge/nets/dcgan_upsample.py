"""``dcgan-upsample``: DCGAN whose generator doubles the resolution by upsampling then convolving.

A stride-2 transposed convolution overlaps its kernels unevenly and tends to paint checkerboard
patterns (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts"); nearest or bilinear
upsampling (``model.upsample``) followed by a 3x3 convolution cannot.  Everything else (widths, the
4x4 start, the discriminator, the options) is :mod:`ganforge.nets.dcgan`'s.
"""
from __future__ import annotations

import functools

import torch.nn as nn

from ganforge.config import Config
from ganforge.modules import maybe_spectral_norm
from ganforge.nets.dcgan import build_dcgan_family


def upsample_conv_stage(in_ch: int, out_ch: int, spectral_norm: bool = False, mode: str = "nearest") -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode=mode),
                         maybe_spectral_norm(nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False), spectral_norm))


def build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    return build_dcgan_family(cfg, functools.partial(upsample_conv_stage, mode=cfg.model.upsample))
