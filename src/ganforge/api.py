"""The Python API: ``ganforge.train(config)`` and friends, which the CLI calls too."""
from __future__ import annotations

from pathlib import Path

from ganforge.config import Config, ConfigError, from_dict
from ganforge.training.checkpoint import safe_load
from ganforge.training.rundir import new_run_dir, resolve_run


def train(config: Config | dict, runs_dir: str | Path = "runs", log_format: str = "bar",
          run_dir: str | Path | None = None, rank: int = 0, world_size: int = 1) -> Path:
    """Train a GAN as ``config`` says, in a new run directory under ``runs_dir``; returns that directory.
    ``rank``/``world_size``: this process's place in a torchrun launch (see training/distributed.py)."""
    from ganforge.training.session import start
    cfg = config if isinstance(config, Config) else from_dict(config)
    return start(cfg, runs_dir=Path(runs_dir), log_format=log_format, run_dir=run_dir, rank=rank,
                 world_size=world_size)


def resume(run: str | Path, runs_dir: str | Path = "runs", log_format: str = "bar",
           overrides: list[str] | None = None, force: bool = False, rank: int = 0, world_size: int = 1) -> Path:
    """Continue a run exactly where its latest valid checkpoint left it."""
    from ganforge.training.session import resume as _resume
    return _resume(resolve_run(run, Path(runs_dir), need_checkpoint=True), log_format=log_format, overrides=overrides or [], force=force,
                   rank=rank, world_size=world_size)
