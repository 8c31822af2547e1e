"""Scanning folders and zips for image names, and the index cache keyed by path, size and mtime."""
from __future__ import annotations

import time

import pytest

from ganforge.data import index as index_mod
from ganforge.data.index import load_index, scan_folder, scan_zip, split_zip_source, unsafe_member_name


def test_folder_scan_is_recursive_case_insensitive_and_skips_hidden_and_non_images(messy):
    found = scan_folder(messy.root).names
    assert found == sorted(messy.good + messy.broken)
    assert not set(found) & set(messy.ignored)
    assert "shirts/UPPER.JPG" in found and "バッグ/set1/mixed.PnG" in found


def test_zip_scan_lists_members_relative_to_the_inner_folder(messy, tmp_path, zip_folder):
    archive = zip_folder(messy.root, tmp_path / "messy.zip", inner="photos/all")
    assert scan_zip(archive, "photos/all").names == sorted(messy.good + messy.broken)
    assert scan_zip(archive, "photos/all/shirts").names == sorted(
        n.split("/", 1)[1] for n in messy.good + messy.broken if n.startswith("shirts/"))
    assert scan_zip(archive, "nope").names == []


def test_hostile_member_names_are_set_aside(messy, tmp_path, zip_folder):
    png = (messy.root / messy.good[0]).read_bytes()
    archive = zip_folder(messy.root, tmp_path / "hostile.zip", extra={
        "../x.png": png, "/etc/abs.png": png, "a/../../up.png": png, "C:/win.png": png,
        "__MACOSX/shirts/._rgb.png": b"\x00\x05\x16\x07", "ok/fine.png": png})
    idx = scan_zip(archive)
    assert sorted(idx.unsafe) == sorted(["../x.png", "/etc/abs.png", "a/../../up.png", "C:/win.png"])
    assert "ok/fine.png" in idx.names and not any("MACOSX" in n for n in idx.names)
    assert len(idx.names) == len(messy.good) + len(messy.broken) + 1


@pytest.mark.parametrize("name, unsafe", [("a/b.png", False), ("../x.png", True), ("a/../../x.png", True),
                                          ("/x.png", True), ("a\\..\\x.png", True), ("c:x.png", True),
                                          ("..x.png", False)])
def test_unsafe_member_name(name, unsafe):
    assert unsafe_member_name(name) is unsafe


def test_split_zip_source(tmp_path):
    assert split_zip_source("faces.zip") == (split_zip_source("faces.zip")[0], "")
    path, inner = split_zip_source("data/Faces.ZIP:some/inner/folder/")
    assert path.name == "Faces.ZIP" and inner == "some/inner/folder"
    assert split_zip_source(str(tmp_path)) is None


def test_cache_is_reused_and_invalidated_by_changes(messy, tmp_path, monkeypatch, zip_folder):
    monkeypatch.setattr(index_mod, "CACHE_MIN_NAMES", 1)  # cache even this small folder
    cache = tmp_path / "index-cache"
    first = load_index("folder", messy.root, cache_dir=cache)
    assert not first.from_cache and len(list(cache.glob("*.json"))) == 1
    again = load_index("folder", messy.root, cache_dir=cache)
    assert again.from_cache and again.names == first.names
    # A file added two levels down changes only its own folder's mtime: still noticed.
    time.sleep(0.01)
    new = messy.root / "shirts" / "set1" / "new.png"
    new.write_bytes((messy.root / messy.good[0]).read_bytes())
    after = load_index("folder", messy.root, cache_dir=cache)
    assert not after.from_cache and "shirts/set1/new.png" in after.names

    archive = zip_folder(messy.root, tmp_path / "a.zip")
    z1 = load_index("zip", archive, cache_dir=cache)
    assert load_index("zip", archive, cache_dir=cache).from_cache
    time.sleep(0.01)
    zip_folder(messy.root / "shirts", archive)  # rewritten: other size and mtime
    z2 = load_index("zip", archive, cache_dir=cache)
    assert not z2.from_cache and len(z2.names) < len(z1.names)


def test_small_sources_and_disabled_cache_write_nothing(messy, tmp_path):
    cache = tmp_path / "index-cache"
    load_index("folder", messy.root, cache_dir=cache)  # far below CACHE_MIN_NAMES
    load_index("folder", messy.root, cache_dir="")
    assert not cache.exists()


def test_cache_keeps_a_bounded_number_of_entries(tmp_path, monkeypatch):
    monkeypatch.setattr(index_mod, "CACHE_MIN_NAMES", 1)
    monkeypatch.setattr(index_mod, "CACHE_KEEP", 3)
    cache = tmp_path / "cache"
    for k in range(5):
        d = tmp_path / f"d{k}"
        d.mkdir()
        (d / "a.png").write_bytes(b"x")
        load_index("folder", d, cache_dir=cache)
        time.sleep(0.01)
    assert len(list(cache.glob("*.json"))) == 3
    assert load_index("folder", tmp_path / "d4", cache_dir=cache).from_cache  # the newest are kept
    assert not load_index("folder", tmp_path / "d0", cache_dir=cache).from_cache
