"""TensorBoard's view of a run (``train.tensorboard``, on by default): ``tensorboard --logdir RUN/tensorboard``.

The events are written during training by :class:`ganforge.training.callbacks.tensorboard.TensorBoardCallback`;
this module holds what it shares with the rest of the reporting (tags, reading grids as RGB).

Every number the trainer logs becomes a scalar, grouped by kind (``loss/``, ``D/``, ``lr/``, ``grad/``,
``speed/``, ``metrics/``), so keys added later (gradient norms, FID, ADA's p) show up without changes
here.  Every fixed-noise grid is logged as it is written (epoch ends, and every ``train.sample_every``
steps), as one image series with a step slider.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ganforge.reporting.rundata import metric_group


def tag(key: str) -> str:
    return f"{metric_group(key)}/{key}"


def read_rgb(path: Path) -> np.ndarray:
    """An image as RGB; a transparent one (an RGBA run's grid) composited on white, as a viewer shows it."""
    with Image.open(path) as img:
        if "A" in img.getbands() or "transparency" in img.info:
            rgba = img.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            canvas.alpha_composite(rgba)
            return np.asarray(canvas.convert("RGB"))
        return np.asarray(img.convert("RGB"))
