"""Where images come from: a folder, a zip archive read in place, a prepared dataset, or a named set.

Every source is a map-style dataset whose items are ``(uint8 tensor C x S x S, label, bad)``: the image
already converted to the configured channels, resized on its shorter side and cropped, and ``bad`` the
index of a file that failed to decode and was replaced by the next good one (-1 when none).  Replacing
rather than dropping keeps an epoch's size fixed, so step counts and resume stay exact.  An item's key is
an index, or ``(index, epoch)`` when the random crop must differ per epoch (the key carries the epoch so
that persistent DataLoader workers, which hold their own copy of the dataset, always know it).

Sources held in memory (named sets, prepared datasets) also offer ``get_batch(indices)``, which the
loader uses instead of worker processes.
"""
from __future__ import annotations

import os
from pathlib import Path

from ganforge.config import Config
from ganforge.data.decode import BrokenImage, decode_to_tensor, resize_crop, to_channels  # noqa: F401
from ganforge.data.index import IMAGE_EXTENSIONS, load_index, split_zip_source  # noqa: F401
from ganforge.data.errors import DataError
from ganforge.data.files import (FolderSource, ImageFileSource, ZipSource, _crop_generator,  # noqa: F401
                                 check_decodable)
from ganforge.data.named import DEBIAN_FASHION_MNIST, NAMED, TensorSource, _read_idx  # noqa: F401
from ganforge.data.prepared_source import PreparedSource, is_prepared


def open_source(cfg: Config):
    """The dataset that ``data.source`` names: a named set, a prepared dataset, a zip, or a folder."""
    src = cfg.data.source
    if src in NAMED:
        return NAMED[src](cfg)
    path = Path(os.path.expanduser(src))
    if path.is_dir():
        if is_prepared(path):
            return PreparedSource(path, cfg)
        ds = FolderSource(path, cfg)
        if len(ds) == 0:
            raise DataError(f"no image files under {path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, "
                            "recursively); point data.source at a folder of images")
        return ds
    zip_parts = split_zip_source(src)
    if zip_parts is not None:
        archive, inner = zip_parts
        if not archive.is_file():
            raise DataError(f"zip archive {archive} does not exist; check the path given to --data")
        ds = ZipSource(archive, inner, cfg)
        if len(ds) == 0:
            where = f"under '{inner}/' in {archive}" if inner else f"in {archive}"
            raise DataError(f"no image files {where} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}); "
                            "check the archive, or name the folder inside it as ARCHIVE.zip:inner/folder")
        return ds
    if not path.exists():
        raise DataError(f"data.source '{src}' does not exist: it is not a file or folder on this machine, nor a "
                        f"named dataset ({', '.join(sorted(NAMED))}); check the path, and to resume a run whose data "
                        "moved, add data.source=NEW_PATH --force")
    raise DataError(f"data.source '{src}' is neither a folder, a zip archive, a prepared dataset nor a named "
                    f"dataset ({', '.join(sorted(NAMED))}); check the path")
