"""The fixed-noise grids of a run in the order they were written: ``samples/grids.jsonl``.

The trainer writes a grid at every epoch end (``epoch_NNNN.png``) and, with ``train.sample_every=N``,
every N steps (``step_NNNNNNNN.png``).  Each one is listed, as it is written (by the trainer), in ``samples/grids.jsonl``
(``{"file", "step", "epoch"}``), so the report's slider, TensorBoard and the timeline can show every grid
in step order, the step grids of a long epoch included, while the run is still going.

Runs from before this index had only their file names: there the epoch grids are shown, or the step
grids when there are no epoch grids, as before.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ganforge.runfiles import RunDir

INDEX = RunDir.GRIDS
_EPOCH_GRID = re.compile(r"^epoch_(\d+)\.png$")
_STEP_GRID = re.compile(r"^step_(\d+)\.png$")


@dataclass
class Grid:
    label: str  # "epoch 3" / "step 120"
    path: Path
    step: int | None = None


def _by_name(folder: Path, pattern: re.Pattern, word: str) -> list[Grid]:
    found = []
    for p in folder.glob("*.png") if folder.is_dir() else []:
        m = pattern.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [Grid(f"{word} {n}", p, n if word == "step" else None) for n, p in sorted(found)]


def read_index(folder: Path) -> list[Grid] | None:
    """The grids of ``samples/`` in step order from its index; None when there is no index (older runs).

    A file listed twice (a resumed run rewrote it) counts once, where it was last written; an entry
    whose file is gone (or is not a grid name: the index is data, never a path to follow) is left
    out; a step grid written at the same step as an epoch grid is the same picture, and only the
    epoch's is kept."""
    index = Path(folder) / INDEX
    if not index.is_file():
        return None
    entries: dict[str, dict] = {}
    for line in index.read_text().splitlines():
        try:
            e = json.loads(line)
            name, step = str(e["file"]), int(e["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
        if (_EPOCH_GRID.match(name) or _STEP_GRID.match(name)) and (Path(folder) / name).is_file():
            entries.pop(name, None)
            entries[name] = {"step": step, "epoch": e.get("epoch")}
    epoch_steps = {v["step"] for k, v in entries.items() if _EPOCH_GRID.match(k)}
    grids = []
    for name, e in entries.items():
        m = _EPOCH_GRID.match(name)
        if m:
            grids.append(Grid(f"epoch {int(m.group(1))}", Path(folder) / name, e["step"]))
        elif e["step"] not in epoch_steps:
            grids.append(Grid(f"step {e['step']}", Path(folder) / name, e["step"]))
    # Stable: at one step an epoch grid comes after a step grid only if it was written later.
    return sorted(grids, key=lambda g: g.step)


def sample_grids(folder: Path) -> list[Grid]:
    """Every grid in ``folder`` in the order it was written (see the module's docstring)."""
    listed = read_index(folder)
    if listed is not None:
        return listed
    return _by_name(Path(folder), _EPOCH_GRID, "epoch") or _by_name(Path(folder), _STEP_GRID, "step")


def epoch_grids(folder: Path) -> list[Grid]:
    return _by_name(Path(folder), _EPOCH_GRID, "epoch")


def step_grids(folder: Path) -> list[Grid]:
    return _by_name(Path(folder), _STEP_GRID, "step")
