"""Run directories: ``runs/<timestamp>_<preset>/``, never overwritten, and how to find them again."""
from __future__ import annotations

import time
from pathlib import Path

from ganforge.config import ConfigError


def new_run_dir(runs_dir: Path, preset: str) -> Path:
    runs_dir = Path(runs_dir)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    base = runs_dir / f"{stamp}_{preset}"
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            path = base.with_name(f"{base.name}-{k}")
            k += 1


def resolve_run(arg: str | Path, runs_dir: Path = Path("runs"), need_checkpoint: bool = False) -> Path:
    """A run directory from a path, or ``latest`` (the newest run under ``runs_dir``; with
    ``need_checkpoint``, the newest that has a checkpoint, so a run that failed before its first save
    is passed over)."""
    if str(arg) == "latest":
        runs = [p for p in Path(runs_dir).glob("*") if (p / "config.yaml").is_file()]
        if need_checkpoint:
            runs = [p for p in runs if any((p / "checkpoints").glob("step_*.pt"))]
        runs.sort(key=lambda p: p.stat().st_mtime)
        if not runs:
            what = "run directories with a checkpoint" if need_checkpoint else "run directories"
            raise ConfigError(f"latest: no {what} under {runs_dir}/")
        return runs[-1]
    path = Path(arg)
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{path} is not a ganforge run directory (it has no config.yaml)")
    return path
