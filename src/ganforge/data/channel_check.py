"""Does ``data.channels`` fit the images?  Checked when the data is opened, before the first step.

Every image is converted to the configured channels, so a mismatch never crashes; it silently trains
the wrong thing instead.  The harmful case is ``data.channels=1`` (the default of the quickstart preset)
on colour images: the model would only ever see grayscale copies, and nobody notices until the samples
come out grey.  That is an error.  The opposite, three channels for grayscale images, trains a model
whose three channels stay equal: wasteful but not wrong, so it is a warning.

Only sources of encoded files (folders, zips) are looked at: a few images spread over the set are
decoded and tested for actual colour (an RGB file whose three channels are equal is grayscale).
"""
from __future__ import annotations

import io
import sys

import numpy as np
from PIL import Image

from ganforge.config import Config, ConfigError

#: Channel values may differ by this much in a grayscale image saved as colour (JPEG chroma noise).
COLOUR_TOLERANCE = 12


def is_colour(data: bytes) -> bool:
    """Whether an encoded image has pixels whose R, G and B differ (transparency composited on white)."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
            return False
        img.draft("RGB", (64, 64))  # JPEG: decode at a reduced size, this is only a look
        img = img.convert("RGBA")
        img.thumbnail((64, 64))
        arr = np.asarray(img, dtype=np.int16)
    rgb, alpha = arr[..., :3], arr[..., 3:] / 255.0
    rgb = rgb * alpha + 255 * (1 - alpha)
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    return bool((spread > COLOUR_TOLERANCE).mean() > 0.01)


def has_transparency(data: bytes) -> bool:
    """Whether an encoded image has a pixel that is not fully opaque (alpha channel or transparent colour)."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode not in ("RGBA", "LA", "PA", "La", "RGBa", "P") and "transparency" not in img.info:
            return False
        img.thumbnail((64, 64))
        return bool(np.asarray(img.convert("RGBA"))[..., 3].min() < 255)


def check_channels(dataset, cfg: Config, sample: int = 8, warn=None) -> None:
    """Raise :class:`ConfigError` for ``data.channels=1`` on colour images; warn for 3 on grayscale, and
    for 4 (RGBA) on images without any transparency."""
    if not hasattr(dataset, "read_bytes") or len(dataset) == 0:
        return  # in-memory sets are converted on purpose when they are loaded
    n = len(dataset)
    picks = sorted({round(k * (n - 1) / max(sample - 1, 1)) for k in range(min(sample, n))})
    warn = warn or (lambda m: print(m, file=sys.stderr, flush=True))
    if cfg.data.channels == 4:
        looked = transparent = 0
        for i in picks:
            try:
                transparent += has_transparency(dataset.read_bytes(i))
                looked += 1
            except Exception:  # noqa: BLE001 - broken files are the loader's to report
                continue
        if looked and not transparent:
            warn(f"warning: data.channels=4 keeps transparency, but the images in "
                 f"{getattr(dataset, 'location', cfg.data.source)} have none ({looked} checked): the alpha channel "
                 "will be learned as fully opaque; data.channels=3 trains the same thing with less work")
        return
    colour, looked = [], 0
    for i in picks:
        try:
            found = is_colour(dataset.read_bytes(i))
        except Exception:  # noqa: BLE001 - broken files are the loader's to report
            continue
        looked += 1
        if found:
            colour.append(dataset.name(i))
    where = getattr(dataset, "location", cfg.data.source)
    if cfg.data.channels == 1 and colour:
        raise ConfigError(
            f"data.channels=1 but the images in {where} are in colour (for example {colour[0]}): a 1-channel model "
            "would only ever see grayscale copies of them. Set data.channels=3 to learn the colours; if grayscale is "
            "what you want, convert the files to grayscale first.")
    if cfg.data.channels == 3 and looked and not colour:
        warn(
            f"warning: data.channels=3 but the images in {where} look grayscale ({looked} checked): the model's "
            "three channels will stay equal; data.channels=1 trains the same thing with less work")
