"""Decoding every format and mode a real folder holds, to the configured channels and size."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data.decode import BrokenImage, decode_to_tensor, resize_crop


@pytest.mark.parametrize("channels", [1, 3])
def test_every_format_and_mode_decodes_to_the_configured_channels(image_variants, channels):
    variants = image_variants
    assert len(variants) == 15
    for name, data in variants.items():
        x = decode_to_tensor(data, channels, (255, 255, 255))
        assert x.dtype == torch.uint8 and x.shape == (channels, 40, 40), name
        assert x.float().std() > 5, f"{name} decoded to a flat image"


def test_transparency_is_composited_on_the_background(fashion_images):
    img = Image.fromarray(np.stack([fashion_images[0]] * 3, -1), "RGB").convert("RGBA")
    alpha = np.zeros((28, 28), np.uint8)
    alpha[:, 14:] = 255  # left half fully transparent, right half opaque
    img.putalpha(Image.fromarray(alpha, "L"))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    x = decode_to_tensor(buf.getvalue(), 3, (10, 200, 30))
    assert x[:, :, :14].reshape(3, -1).unique(dim=1).tolist() == [[10], [200], [30]]
    assert torch.equal(x[0, :, 14:], torch.from_numpy(fashion_images[0][:, 14:].copy()))


def test_sixteen_bit_is_scaled_not_clipped(fashion_images):
    arr = fashion_images[1].astype(np.uint16) * 257  # 0..65535
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    x = decode_to_tensor(buf.getvalue(), 1, (0, 0, 0))
    assert torch.equal(x[0], torch.from_numpy(fashion_images[1].copy()))


def test_palette_with_transparency_uses_the_background():
    img = Image.new("P", (8, 8), 0)
    img.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    img.paste(1, (4, 0, 8, 8))
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)  # palette entry 0 (red) is transparent
    x = decode_to_tensor(buf.getvalue(), 3, (0, 255, 0))
    assert x[:, 0, 0].tolist() == [0, 255, 0] and x[:, 0, 7].tolist() == [0, 0, 255]


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"GIF89a but then nothing useful", None),
    (b"plain text pretending to be a png\n", None),
])
def test_undecodable_bytes_raise_broken_image(data, reason):
    with pytest.raises(BrokenImage, match=reason):
        decode_to_tensor(data, 3, (255, 255, 255))


def test_truncated_jpeg_is_broken_not_grey_padded(image_variants):
    jpg = image_variants["rgb.jpg"]
    with pytest.raises(BrokenImage, match="(?i)truncated"):
        decode_to_tensor(jpg[: len(jpg) // 2], 3, (255, 255, 255))


def test_large_jpeg_decodes_at_reduced_scale_but_never_below_the_target(fashion_images):
    big = Image.fromarray(fashion_images[2], "L").resize((178, 218), Image.BICUBIC).convert("RGB")
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=95)
    full = decode_to_tensor(buf.getvalue(), 3, (0, 0, 0))
    reduced = decode_to_tensor(buf.getvalue(), 3, (0, 0, 0), min_side=64)
    assert full.shape == (3, 218, 178)
    assert reduced.shape == (3, 109, 89)  # libjpeg's 1/2 scale: both sides still >= 64
    a = resize_crop(full, 64).float()
    b = resize_crop(reduced, 64).float()
    assert (a - b).abs().mean() < 4  # the same picture


def test_resize_crop_shorter_side_centre_and_random():
    x = torch.arange(3 * 50 * 80, dtype=torch.int64).reshape(3, 50, 80).to(torch.uint8)
    assert resize_crop(x, 32).shape == (3, 32, 32)
    crops = {tuple(resize_crop(x, 32, torch.Generator().manual_seed(s)).flatten()[:4].tolist()) for s in range(8)}
    assert len(crops) > 1  # random positions along the longer side
    same = [resize_crop(x, 32, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*same)
