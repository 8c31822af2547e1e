"""Fixtures for the data tests (the builders are in messy_data.py)."""
from __future__ import annotations

import pytest

from messy_data import MessyDataset, build_messy_folder


@pytest.fixture
def messy(tmp_path, fashion_images) -> MessyDataset:
    return build_messy_folder(tmp_path / "messy", fashion_images)
