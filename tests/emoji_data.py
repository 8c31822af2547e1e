"""Google's Noto emoji (npm ``emoji-datasource-google@16.0.0``, Apache-2.0): real RGBA images for tests.

The package is installed with npm, once, into ``$GANFORGE_TEST_DATA`` (default
``~/.cache/ganforge/test-data``), as ../shared/DATASETS.md and ``benchmarks/quality.py`` do; tests that
need it are skipped, saying why, when npm is missing or the registry cannot be reached.  The images are
64x64 PNGs with transparent backgrounds (RGBA, some LA or palette).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGE = "emoji-datasource-google@16.0.0"
SKIN_TONES = ("-1f3fb", "-1f3fc", "-1f3fd", "-1f3fe", "-1f3ff")


def data_root() -> Path:
    return Path(os.path.expanduser(os.environ.get("GANFORGE_TEST_DATA") or "~/.cache/ganforge/test-data"))


def emoji_package_folder() -> Path:
    """The package's 64 px PNG folder, installed with npm if it is not there yet (else pytest.skip)."""
    prefix = data_root() / "npm"
    folder = prefix / "node_modules" / "emoji-datasource-google" / "img" / "google" / "64"
    if folder.is_dir() and any(folder.glob("*.png")):
        return folder
    # A GPU machine without a registry: the set scripts/gpu_check.sh carries (unpacked when the check starts).
    carried = Path(__file__).resolve().parent.parent / ".gpu_carry" / "emoji64"
    if carried.is_dir() and any(carried.glob("*.png")):
        return carried
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"the emoji test set needs npm to install {PACKAGE} (apt-get install npm); it is not on PATH")
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-save", "--no-package-lock",
                           "--ignore-scripts", PACKAGE], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not folder.is_dir():
        pytest.skip(f"npm could not install {PACKAGE} into {prefix} (offline?): {done.stderr.strip()[-300:]}")
    return folder


def emoji_files(n: int) -> list[Path]:
    """``n`` emoji PNGs without skin-tone variants, spread over the whole set (sorted by code point)."""
    files = [p for p in sorted(emoji_package_folder().glob("*.png")) if not any(t in p.name for t in SKIN_TONES)]
    step = max(1, len(files) // n)
    return files[::step][:n]


def emoji_folder(folder: Path, n: int) -> Path:
    """A folder of ``n`` real emoji (copies of the package's files), for a test to train on."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in emoji_files(n):
        shutil.copyfile(p, folder / p.name)
    return folder
