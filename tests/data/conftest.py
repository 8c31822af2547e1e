"""Fixtures for the data tests: a messy real-image dataset on disk, as a folder and as a zip.

The images are Fashion-MNIST's, written out in every format and mode a real folder holds; the broken
files are the kinds that kill training runs elsewhere: zero bytes, a truncated JPEG, and a text file
named like an image.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _rgb(a: np.ndarray, i: int, size: int) -> np.ndarray:
    img = np.asarray(Image.fromarray(a, "L").resize((size, size), Image.BILINEAR), dtype=np.float32)
    tint = np.array([(i * 37) % 256, (i * 91) % 256, (i * 53) % 256], dtype=np.float32) / 255.0
    return (img[..., None] * (0.5 + 0.5 * tint)).clip(0, 255).astype(np.uint8)


def encode_variants(images: np.ndarray, size: int = 40) -> dict[str, bytes]:
    """One real image in each format and mode: name -> encoded bytes."""
    out = {}

    def save(name, img, fmt, **kw):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    rgb = [Image.fromarray(_rgb(images[i], i, size), "RGB") for i in range(12)]
    gray = Image.fromarray(images[12], "L").resize((size, size))
    save("rgb.jpg", rgb[0], "JPEG", quality=92)
    save("gray.jpeg", gray, "JPEG")
    save("cmyk.jpg", rgb[1].convert("CMYK"), "JPEG")
    save("rgb.png", rgb[2], "PNG")
    rgba = rgb[3].convert("RGBA")
    rgba.putalpha(Image.fromarray(images[13], "L").resize((size, size)))
    save("rgba.png", rgba, "PNG")
    la = gray.convert("LA")
    save("la.png", la, "PNG")
    save("palette.png", rgb[4].convert("P", palette=Image.ADAPTIVE, colors=64), "PNG")
    pal_t = rgb[5].convert("P", palette=Image.ADAPTIVE, colors=32)
    save("palette_transparent.png", pal_t, "PNG", transparency=0)
    sixteen = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)
    save("sixteen_bit.png", sixteen, "PNG")
    save("rgb.bmp", rgb[6], "BMP")
    save("rgb.gif", rgb[7].convert("P", palette=Image.ADAPTIVE), "GIF")
    save("rgba.webp", rgb[8].convert("RGBA"), "WEBP", quality=90)
    save("rgb.tiff", rgb[9], "TIFF")
    save("UPPER.JPG", rgb[10], "JPEG")
    save("mixed.PnG", rgb[11], "PNG")
    return out


@dataclass
class MessyDataset:
    root: Path
    good: list[str]  # relative names of decodable images
    broken: list[str]  # relative names of image-named files that cannot be decoded
    ignored: list[str]  # files that are not images (or hidden) and must not be counted at all


def build_messy_folder(root: Path, images: np.ndarray, copies: int = 2) -> MessyDataset:
    """Nested class folders, unicode names, every format/mode, 3 broken files and some non-images."""
    variants = encode_variants(images)
    good = []
    for c, cls in enumerate(["shirts", "schuhe_äöü", "バッグ"]):
        for k in range(copies):
            for j, (name, data) in enumerate(variants.items()):
                rel = f"{cls}/set{k}/{'ü' if j % 3 == 0 else ''}{name}" if k else f"{cls}/{name}"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(data)
                good.append(rel)
    jpg = variants["rgb.jpg"]
    broken = {"shirts/zero_bytes.jpg": b"", "schuhe_äöü/truncated.jpg": jpg[: len(jpg) // 2],
              "バッグ/not_really.png": b"this is a text file, not a PNG\n"}
    for rel, data in broken.items():
        (root / rel).write_bytes(data)
    ignored = {"shirts/notes.txt": b"hello", "shirts/.hidden.png": variants["rgb.png"],
               ".cache/thumb.png": variants["rgb.png"], "README": b"x"}
    for rel, data in ignored.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return MessyDataset(root, sorted(good), sorted(broken), sorted(ignored))


def zip_folder(folder: Path, archive: Path, inner: str = "", extra: dict[str, bytes] | None = None) -> Path:
    """A real zip of ``folder`` (deflated), optionally under ``inner/``, with ``extra`` members as given."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                rel = p.relative_to(folder).as_posix()
                zf.write(p, f"{inner}/{rel}" if inner else rel)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive


# Fixtures hand out the builders themselves: test modules never import this file by name.
@pytest.fixture
def messy(tmp_path, fashion_images) -> MessyDataset:
    return build_messy_folder(tmp_path / "messy", fashion_images)


@pytest.fixture
def build_messy():
    return build_messy_folder


@pytest.fixture(name="zip_folder")
def zip_folder_fixture():
    return zip_folder


@pytest.fixture
def image_variants(fashion_images) -> dict[str, bytes]:
    return encode_variants(fashion_images)
