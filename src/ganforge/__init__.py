"""ganforge: train GANs on image folders and zips, and see how they do.

Python API::

    import ganforge
    cfg = ganforge.config.load(preset="quickstart", overrides=["train.epochs=1"])
    run_dir = ganforge.train(cfg)
"""
from __future__ import annotations

__version__ = "0.1.0"

from ganforge import config  # noqa: F401,E402
from ganforge.api import train  # noqa: F401,E402
