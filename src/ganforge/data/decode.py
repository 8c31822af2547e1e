"""One image's bytes to a uint8 tensor C x S x S: decode, channels, shorter-side resize, crop.

Decoding is Pillow's (libjpeg-turbo for JPEG), which knows every mode a folder of real images holds:
grayscale, RGBA and LA (composited on the configured background, or kept as RGBA with
``data.channels=4``), palette (with or without
transparency), CMYK and 16-bit; a truncated file raises instead of being padded with grey.  JPEGs are
decoded straight at a reduced scale when the target size allows it.  (``torchvision.io``'s decoders are
deprecated since torchvision 0.29.)  Resizing and cropping use ``torchvision.transforms.v2.functional``.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageFile
from torchvision.transforms.v2 import functional as TF

# A truncated file must be reported as broken, not silently padded.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class BrokenImage(ValueError):
    """The bytes are not a decodable image (empty, truncated, not an image at all)."""


def to_channels(img: Image.Image, channels: int, background: tuple[int, int, int]) -> Image.Image:
    """Any PIL mode (L, LA, P, RGBA, CMYK, I;16, ...) to 'L' or 'RGB', transparency on ``background``;
    with ``channels=4``, to 'RGBA' with the transparency kept (opaque images get an alpha of 255)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if channels == 4:
        # Premultiplied modes (La, RGBa) and a transparent colour key convert to plain RGBA; CMYK and
        # the rest become opaque RGBA.
        return img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode in ("RGB", "L") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        canvas.alpha_composite(rgba)
        img = canvas
    return img.convert("L" if channels == 1 else "RGB")


def resize_crop(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Resize the shorter side to ``size`` (antialiased) and crop ``size`` x ``size``: at the centre, or at a
    position drawn from ``generator`` (a random crop)."""
    if min(x.shape[-2:]) != size:
        x = _resize_rgba(x, size) if x.shape[-3] == 4 else TF.resize(x, size, antialias=True)
    if generator is None:
        return TF.center_crop(x, [size, size])
    h, w = x.shape[-2:]
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return x[..., top:top + size, left:left + size]


def _resize_rgba(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 RGBA with the colours weighted by their alpha (premultiplied), as compositors do: a
    plain resize would blend the invisible colours of transparent pixels into the visible edges (dark
    fringes around emoji, whose transparent pixels are black).  Pixels left fully transparent get colour 0."""
    f = x.float()
    alpha = f[..., 3:4, :, :]
    premultiplied = torch.cat([f[..., :3, :, :] * (alpha / 255.0), alpha], dim=-3)
    r = TF.resize(premultiplied, size, antialias=True)
    a = r[..., 3:4, :, :].clamp(0, 255)
    rgb = torch.where(a > 0, r[..., :3, :, :] * 255.0 / a.clamp_min(1e-6), torch.zeros_like(r[..., :3, :, :]))
    return torch.cat([rgb, a], dim=-3).round().clamp(0, 255).to(torch.uint8)


def decode_to_tensor(data: bytes, channels: int, background: tuple[int, int, int],
                     min_side: int = 0) -> torch.Tensor:
    """Encoded image bytes to a uint8 tensor (channels, H, W); :class:`BrokenImage` when that fails.

    ``min_side`` lets a JPEG decode at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, Pillow's ``draft``)
    as long as both sides stay at least that long: most of a large photo's decoding time is saved.
    """
    if not data:
        raise BrokenImage("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if min_side and img.format == "JPEG":
                img.draft("L" if channels == 1 else "RGB", (min_side, min_side))  # JPEGs have no alpha
            img.load()
            img = to_channels(img, channels, background)
        return TF.pil_to_tensor(img)
    except Exception as e:  # noqa: BLE001 - whatever the decoder says, the file is unusable
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise BrokenImage(reason[:200]) from None
