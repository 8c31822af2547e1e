"""The Python API: ``ganforge.train(config)`` and friends, which the CLI calls too."""
from __future__ import annotations

from pathlib import Path

from ganforge.config import Config, ConfigError, from_dict
from ganforge.storage import safe_load
from ganforge.runfiles import check_name, resolve_run


def train(config: Config | dict, runs_dir: str | Path = "runs", log_format: str = "bar",
          run_dir: str | Path | None = None, rank: int | None = None, world_size: int | None = None,
          name: str | None = None, callbacks: list | None = None) -> Path:
    """Train a GAN as ``config`` says, in a new run directory ``runs_dir/<timestamp>_<name>`` (``name``
    defaults to the preset's); returns that directory.  ``callbacks``: objects with any of ``on_start``,
    ``on_step``, ``on_log``, ``on_epoch_end``, ``on_end`` (trainer first), run after the default ones.
    ``rank``/``world_size``: this process's place in a torchrun launch; by default read from the
    environment torchrun sets (see training/distributed.py), so a script run under torchrun just works."""
    from ganforge.training.session import start
    cfg = config if isinstance(config, Config) else from_dict(config)
    rank, world_size = _launch(rank, world_size)
    if name is not None:
        check_name(name)
    return start(cfg, runs_dir=Path(runs_dir), log_format=log_format, run_dir=run_dir, rank=rank,
                 world_size=world_size, name=name, callbacks=callbacks)


def _launch(rank: int | None, world_size: int | None) -> tuple[int, int]:
    from ganforge.training.distributed import launch_environment
    env = launch_environment()
    return (env.rank if rank is None else rank), (env.world_size if world_size is None else world_size)


def resume(run: str | Path, runs_dir: str | Path = "runs", log_format: str = "bar",
           overrides: list[str] | None = None, force: bool = False, rank: int | None = None,
           world_size: int | None = None) -> Path:
    """Continue a run exactly where its latest valid checkpoint left it (under torchrun: every rank)."""
    from ganforge.training.session import resume as _resume
    rank, world_size = _launch(rank, world_size)
    return _resume(resolve_run(run, Path(runs_dir), need_checkpoint=True), log_format=log_format, overrides=overrides or [], force=force,
                   rank=rank, world_size=world_size)
