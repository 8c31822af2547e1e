"""Fixtures for the evaluation tests: a few-step generator trained on real image files, and a private cache."""
from __future__ import annotations

import pytest

N_EVAL = 8  # images per evaluation in tests: enough for every metric (density needs k + 1 = 6), cheap on 2 cores


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Real-data statistics go to this test's own cache, never the user's."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "ganforge-cache"))
    return tmp_path / "ganforge-cache" / "stats"


@pytest.fixture
def trained_run(tmp_path, image_folder, tiny):
    """A run directory trained for 4 steps (EMA on) on 64 real image files, and that folder."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the extra 'effnet': pip install 'ganforge[effnet]'")
    import ganforge
    run = ganforge.train(tiny(image_folder, "train.max_steps=4", "ema.enabled=true"), runs_dir=tmp_path / "runs",
                         log_format="quiet")
    return run, image_folder
