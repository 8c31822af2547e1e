"""Sources of encoded image files: a folder searched recursively, or a zip archive read in place.

Both are map-style datasets whose items are ``(uint8 tensor C x S x S, label, bad)`` (see
:mod:`ganforge.data.sources`, which opens whichever source ``data.source`` names);
:func:`check_decodable` is the preflight that refuses a source whose files mostly fail to decode.
"""
from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path

import torch

from ganforge.config import Config
from ganforge.data.decode import BrokenImage, decode_to_tensor, resize_crop
from ganforge.data.errors import DataError
from ganforge.data.index import load_index


#: How many files in a row an item tries (a broken file is replaced by the next good one) before it
#: concludes that the data has gone away.
MAX_TRIES = 1000


def _crop_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    # The same crop whichever worker decodes the image, and again after a resume.
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 2_147_483_647 + index) % (2**63))


class ImageFileSource(torch.utils.data.Dataset):
    """Encoded image files, by name; subclasses say how to read one file's bytes."""

    kind = "files"

    def __init__(self, location: str, names: list[str], cfg: Config):
        self.location = location
        self.size = cfg.data.image_size
        self.channels = cfg.data.channels
        self.background = tuple(cfg.data.background)
        self.random_crop = cfg.data.crop == "random"
        self.seed = cfg.train.seed
        if cfg.data.limit:
            names = names[: cfg.data.limit]
        self.files = names
        self.classes: list[str] = []
        self.labels = [0] * len(names)
        self.scan_errors: list[tuple[str, str]] = []  # names left out while scanning, with why
        if cfg.data.labels:
            self._read_labels()

    def _read_labels(self) -> None:
        loose = [f for f in self.files if "/" not in f]
        if loose:
            raise DataError(f"data.labels=true reads each image's class from its first folder level, but "
                            f"{len(loose)} image(s) in {self.location} are in no class folder (for example "
                            f"{', '.join(loose[:3])}); move them into class folders or set data.labels=false")
        self.classes = sorted({f.split("/", 1)[0] for f in self.files})
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = [index[f.split("/", 1)[0]] for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def name(self, i: int) -> str:
        return self.files[i]

    def read_bytes(self, i: int) -> bytes:
        raise NotImplementedError

    def decode(self, i: int, epoch: int = 0) -> torch.Tensor:
        """File ``i`` as uint8 C x S x S; raises :class:`BrokenImage` when it cannot be decoded."""
        try:
            data = self.read_bytes(i)
        except OSError as e:
            raise BrokenImage(f"could not be read: {e.strerror or e}") from None
        x = decode_to_tensor(data, self.channels, self.background, min_side=self.size)
        return resize_crop(x, self.size, _crop_generator(self.seed, epoch, i) if self.random_crop else None)

    def __getitem__(self, key):
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        bad, reason = -1, ""
        tries = min(len(self.files), MAX_TRIES)
        for attempt in range(tries):
            j = (i + attempt) % len(self.files)
            try:
                return self.decode(j, epoch), self.labels[j], bad
            except BrokenImage as e:
                if bad == -1:
                    bad, reason = j, str(e)
        # So many broken files in a row (the preflight let at most data.max_bad_fraction through): the data
        # has gone away since (files deleted, a drive or network mount disconnected, a zip overwritten).
        every = "none" if tries == len(self.files) else f"none of {tries} files in a row"
        raise DataError(f"{every} of the files in {self.location} could be read or decoded any more (for example "
                        f"{self.files[bad]}: {reason}): the data changed or went away during training (a "
                        "disconnected drive or network mount?)")


class FolderSource(ImageFileSource):
    """Image files under a folder, searched recursively; hidden files and non-images ignored."""

    kind = "folder"

    def __init__(self, root: Path, cfg: Config):
        self.root = Path(root)
        index = load_index("folder", self.root, cache_dir=cfg.data.index_cache)
        super().__init__(str(self.root), index.names, cfg)

    def read_bytes(self, i: int) -> bytes:
        with open(os.path.join(self.root, self.files[i]), "rb") as f:
            return f.read()


class ZipSource(ImageFileSource):
    """Image members of a zip archive, read in place: nothing is extracted, and a member's name is only
    ever a key into the archive, never a path on disk.

    The index records where each member's bytes lie, so each process (each DataLoader worker) only opens
    its own file descriptor and reads a stored or deflated member with one positioned read
    (``os.pread``), checked against its size and CRC-32: about as fast as reading a file from a folder,
    where ``ZipFile.read`` takes five times as long per small member and every worker would first parse
    the whole central directory.  Encrypted members or other compression methods go through
    :mod:`zipfile`.
    """

    kind = "zip"

    def __init__(self, archive: Path, inner: str, cfg: Config):
        self.archive, self.inner = Path(archive), inner
        self.prefix = inner + "/" if inner else ""
        try:
            index = load_index("zip", self.archive, inner, cache_dir=cfg.data.index_cache)
        except zipfile.BadZipFile as e:
            raise DataError(f"{self.archive} is not a readable zip archive ({e}); check the file "
                            "(an interrupted download?) or unzip it and pass the folder") from None
        super().__init__(f"{self.archive}:{inner}" if inner else str(self.archive), index.names, cfg)
        self.members = index.members[: len(self.files)]
        self.scan_errors = [(n, "unsafe member name (would leave the folder if extracted): not used")
                            for n in index.unsafe]
        self._zip: zipfile.ZipFile | None = None
        self._fd, self._pid = -1, -1

    def _file(self) -> int:
        if self._pid != os.getpid():  # a forked worker must not share the parent's file position or handle
            self._fd, self._pid = os.open(self.archive, os.O_RDONLY | getattr(os, "O_BINARY", 0)), os.getpid()
            self._zip = None
        return self._fd

    def _read_with_zipfile(self, i: int) -> bytes:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.archive)
        return self._zip.read(self.prefix + self.files[i])

    def read_bytes(self, i: int) -> bytes:
        offset, compressed_size, size, crc, method, flags = self.members[i]
        fd = self._file()
        try:
            if not hasattr(os, "pread") or flags & 0x1 or method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                return self._read_with_zipfile(i)
            header = os.pread(fd, zipfile.sizeFileHeader, offset)
            if len(header) != zipfile.sizeFileHeader or header[:4] != zipfile.stringFileHeader:
                raise BrokenImage("zip member has no valid local header")
            name_length, extra_length = struct.unpack("<HH", header[26:30])  # the zip format's local header
            data = os.pread(fd, compressed_size, offset + zipfile.sizeFileHeader + name_length + extra_length)
            if method == zipfile.ZIP_DEFLATED:
                data = zlib.decompress(data, -15)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, EOFError, ValueError, zlib.error) as e:
            raise BrokenImage(f"zip member could not be read: {e}") from None
        if len(data) != size or zlib.crc32(data) != crc:
            raise BrokenImage("zip member is damaged (size or CRC mismatch)")
        return data

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"], state["_fd"], state["_pid"] = None, -1, -1  # handles do not travel to workers
        return state

    def __del__(self):
        if getattr(self, "_fd", -1) >= 0 and self._pid == os.getpid():
            os.close(self._fd)


def check_decodable(ds, max_bad_fraction: float, sample: int = 512) -> list[tuple[int, str]]:
    """Decode up to ``sample`` files spread over the dataset before training starts.

    Returns the broken ones as ``(index, reason)``.  Stops with a :class:`DataError` naming the source
    and some offending files when none decodes, or when more than ``max_bad_fraction`` of them are
    broken.  With ``sample`` or fewer files every file is checked, so the counts are exact.
    """
    if not hasattr(ds, "decode") or len(ds) == 0:
        return []
    n = len(ds)
    picks = range(n) if n <= sample else sorted({round(k * (n - 1) / (sample - 1)) for k in range(sample)})
    bad = []
    for i in picks:
        try:
            ds.decode(i)
        except BrokenImage as e:
            bad.append((i, str(e)))
    checked = len(picks)
    examples = "\n".join(f"  {ds.name(i)}: {why}" for i, why in bad[:5])
    if len(bad) == checked:
        raise DataError(f"no usable image in {ds.location}: all {checked} files checked failed to decode, "
                        f"for example\n{examples}\nPoint data.source at a folder or zip of images.")
    if len(bad) / checked > max_bad_fraction:
        raise DataError(f"{len(bad)} of {checked} files checked in {ds.location} are broken "
                        f"({len(bad) / checked:.0%}, more than data.max_bad_fraction={max_bad_fraction:g}), "
                        f"for example\n{examples}\nRemove or re-download them, or raise data.max_bad_fraction "
                        "to train on the rest.")
    return bad
