"""The list of image names in a folder or a zip archive, scanned once and cached.

Scanning is names only (no image is opened): a folder is walked with ``os.scandir``, a zip's central
directory is read by :mod:`zipfile` (and where each member's bytes lie is kept with its name, so that
DataLoader workers never parse the central directory again).  Both take about a second per 200,000 names; the result is cached
as JSON under ``data.index_cache`` (default ``~/.cache/ganforge/index/``), keyed by the source's path,
size and modification time, so a second run on the same data starts at once.  A folder's entry also
records every sub-folder's modification time, which changes whenever a file is added, removed or
renamed in it, so a changed tree is always rescanned.  Small sources (under ``CACHE_MIN_NAMES``) are not
cached: they scan in milliseconds, and test runs on temporary folders would only leave litter.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
INDEX_VERSION = 2
CACHE_MIN_NAMES = 10_000
CACHE_KEEP = 50  # index files kept in the cache folder (the least recently used go first)


@dataclass
class Index:
    """Image names under one source (relative, '/'-separated), sorted, and what was left out."""

    names: list[str]
    unsafe: list[str] = field(default_factory=list)  # zip members whose names could escape a folder
    dirs: dict[str, int] = field(default_factory=dict)  # folder: sub-folder -> st_mtime_ns
    # zip: where each name's bytes are, aligned with ``names``: (local header offset, compressed size,
    # size, CRC-32, compression method, flag bits).  Workers read members with it directly.
    members: list[list[int]] = field(default_factory=list)
    from_cache: bool = False


def is_image_name(name: str) -> bool:
    base = name[name.rfind("/") + 1:]
    dot = base.rfind(".")
    return dot > 0 and base[dot:].lower() in IMAGE_EXTENSIONS  # dot == 0: a hidden file


def scan_folder(root: Path) -> Index:
    """Image files under ``root``, recursively; hidden files and folders (``.name``) are skipped."""
    names: list[str] = []
    dirs: dict[str, int] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(root, rel) if rel else str(root)
        dirs[rel] = os.stat(path).st_mtime_ns
        with os.scandir(path) as entries:
            for e in entries:
                if e.name.startswith("."):
                    continue
                name = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append(name)
                elif is_image_name(e.name) and e.is_file():
                    names.append(name)
    names.sort()
    return Index(names=names, dirs=dirs)


def unsafe_member_name(name: str) -> bool:
    """A member name that, used as a path, would leave the folder it is extracted to."""
    return (name.startswith("/") or "\\" in name or "\x00" in name or (len(name) > 1 and name[1] == ":")
            or (".." in name and ".." in name.split("/")))


def split_zip_source(source: str) -> tuple[Path, str] | None:
    """``faces.zip`` or ``faces.zip:inner/folder`` -> (archive path, inner folder), or None if not a zip."""
    lowered = source.lower()
    at = lowered.rfind(".zip:")
    if at >= 0:
        return Path(os.path.expanduser(source[: at + 4])), source[at + 5:].strip("/")
    if lowered.endswith(".zip"):
        return Path(os.path.expanduser(source)), ""
    path = Path(os.path.expanduser(source))
    if path.is_file() and zipfile.is_zipfile(path):
        return path, ""
    return None


def scan_zip(archive: Path, inner: str = "") -> Index:
    """Image members of ``archive`` under ``inner`` (names relative to it); nothing is extracted."""
    prefix = inner + "/" if inner else ""
    found, unsafe = [], []
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
    for info in infos:  # plain string tests: 200,000 names take well under a second
        name = info.filename
        if not name.startswith(prefix) or name.endswith("/") or not is_image_name(name):
            continue
        rel = name[len(prefix):]
        if "/." in "/" + rel and any(p.startswith(".") and p not in (".", "..") for p in rel.split("/")):
            continue  # hidden file or folder
        if rel.startswith("__MACOSX/"):
            continue
        if unsafe_member_name(name):
            unsafe.append(name)
            continue
        found.append((rel, [info.header_offset, info.compress_size, info.file_size, info.CRC,
                            info.compress_type, info.flag_bits]))
    found.sort(key=lambda item: item[0])
    return Index(names=[n for n, _ in found], unsafe=sorted(unsafe), members=[m for _, m in found])


# --------------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------------
def _cache_file(cache_dir: Path, kind: str, path: Path, inner: str) -> Path:
    st = path.stat()
    key = f"{INDEX_VERSION}|{kind}|{path.resolve()}|{inner}|{st.st_size}|{st.st_mtime_ns}"
    return cache_dir / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def _read_cached(file: Path, root: Path | None) -> Index | None:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    if data.get("version") != INDEX_VERSION:
        return None
    dirs = {k: int(v) for k, v in data.get("dirs", {}).items()}
    if root is not None:
        for rel, mtime in dirs.items():  # any file added, removed or renamed changes its folder's mtime
            try:
                if os.stat(os.path.join(root, rel) if rel else root).st_mtime_ns != mtime:
                    return None
            except OSError:
                return None
    os.utime(file)  # least recently used goes first when pruning
    return Index(names=data["names"], unsafe=data.get("unsafe", []), dirs=dirs, members=data.get("members", []),
                 from_cache=True)


def _write_cached(file: Path, index: Index, source: str) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"version": INDEX_VERSION, "source": source, "names": index.names,
                                   "unsafe": index.unsafe, "dirs": index.dirs, "members": index.members}))
        os.replace(tmp, file)
        old = sorted(file.parent.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-CACHE_KEEP]
        for p in old:
            p.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only cache folder only costs the next run a rescan


def load_index(kind: str, path: Path, inner: str = "", cache_dir: str | Path | None = None) -> Index:
    """The index of a folder (``kind='folder'``) or zip (``kind='zip'``), from the cache when valid."""
    cache = Path(os.path.expanduser(str(cache_dir))) if cache_dir else None
    file = _cache_file(cache, kind, path, inner) if cache else None
    if file is not None and file.is_file():
        found = _read_cached(file, path if kind == "folder" else None)
        if found is not None:
            return found
    index = scan_folder(path) if kind == "folder" else scan_zip(path, inner)
    if file is not None and len(index.names) >= CACHE_MIN_NAMES:
        _write_cached(file, index, f"{path}:{inner}" if inner else str(path))
    return index
