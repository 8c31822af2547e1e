"""Starting and resuming runs: the run directory, the saved config and facts, callbacks, and the trainer."""
from __future__ import annotations

from pathlib import Path

import yaml

from ganforge import nets
from ganforge.config import Config, ConfigError, apply_overrides, from_dict
from ganforge.runfiles import RunDir, RunFacts, new_run_dir, read_facts, split_saved_config
from ganforge.training import distributed
from ganforge.training import init_from
from ganforge.training.callbacks import default_callbacks
from ganforge.training.preflight import preflight
from ganforge.storage import CheckpointStore, RunLock, atomic_write_text, remove_stale_temporaries, trim_jsonl
from ganforge.training.signals import fit_until_stopped
from ganforge.training.trainer import Trainer

#: Keys a resume may change without --force: they say how long or how often, not what is trained.
RESUME_MAY_CHANGE = {"train.epochs", "train.max_steps", "train.max_minutes", "train.log_every", "train.sample_every",
                     "train.midsave_steps", "train.midsave_minutes", "train.save_every_minutes", "train.keep_checkpoints",
                     "train.tensorboard", "train.report", "eval.every", "data.num_workers",
                     "data.prefetch_factor", "data.persistent_workers", "data.index_cache", "data.timeout_seconds",
                     "train.compile", "train.channels_last", "train.cuda_graphs"}  # speed, not results


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def config_diff(a: Config, b: Config) -> dict[str, tuple]:
    fa, fb = _flatten(a.to_dict()), _flatten(b.to_dict())
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def save_config(cfg: Config, run_dir: Path) -> None:
    atomic_write_text(RunDir(run_dir).config, cfg.to_yaml())


def save_facts(facts: RunFacts, run_dir: Path) -> None:
    atomic_write_text(RunDir(run_dir).facts, facts.to_json())


def load_run_config(run_dir: Path) -> tuple[Config, RunFacts]:
    """The run's config and facts; a run saved before ``run.json`` has its facts in ``config.yaml``."""
    data, _ = split_saved_config(yaml.safe_load(RunDir(run_dir).config.read_text()))
    return from_dict(data), read_facts(run_dir)


def trim_logs(run_dir: Path, step: int) -> None:
    """Before a resume from ``step``: forget the log lines written after it (by a run that was killed
    before its next save), and a line cut short by the kill, so that the resumed run writes each step
    once.  ``metrics.jsonl``, ``diagnostics.jsonl`` and ``samples/grids.jsonl`` are rewritten atomically."""
    run = RunDir(run_dir)
    for path in (run.metrics, run.diagnostics, run.samples / RunDir.GRIDS):
        trim_jsonl(path, lambda record: not isinstance(record.get("step"), int) or record["step"] <= step)


def start(cfg: Config, runs_dir: Path, log_format: str = "bar", run_dir: Path | None = None,
          rank: int = 0, world_size: int = 1, name: str | None = None, callbacks: list | None = None) -> Path:
    """A new run of ``cfg``; ``callbacks`` run after the default ones (TensorBoard, report, evaluation)."""
    distributed.setup(cfg, rank, world_size)
    cfg, facts = distributed.record_scale(cfg, world_size)  # lr scaling in config.yaml, effective batch in run.json
    # train.init_from (fine-tuning): the source found and checked before the new run's folder exists
    # ("latest" must not find the new run itself); its path goes into config.yaml, its step into run.json.
    cfg, init = init_from.prepare(cfg, runs_dir)
    facts.init_from_step = (init.step or 0) if init is not None else 0
    preflight(cfg)  # every config and environment check: a run that cannot work leaves nothing on disk
    log_format = log_format if rank == 0 else "quiet"
    lock = None
    if rank == 0:  # rank 0 alone creates the run directory (and holds its lock); the others learn its name
        run_dir = Path(run_dir) if run_dir else new_run_dir(runs_dir, name or cfg.preset)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(run_dir, "train").acquire()
    try:
        if rank == 0:
            save_config(cfg, run_dir)
            save_facts(facts, run_dir)
        run_dir = Path(distributed.broadcast_object(str(run_dir) if rank == 0 else None))
        return _start_training(cfg, facts, run_dir, log_format, rank, world_size, init, callbacks)
    finally:
        if lock is not None:
            lock.release()


def _start_training(cfg: Config, facts: RunFacts, run_dir: Path, log_format: str, rank: int, world_size: int, init,
                    callbacks: list | None) -> Path:
    trainer = Trainer(cfg, run_dir, log_format=log_format, rank=rank, world_size=world_size, facts=facts)
    trainer.callbacks = default_callbacks(cfg, trainer) + list(callbacks or [])
    if log_format != "quiet":
        print(f"ganforge: training {cfg.preset} ({cfg.model.name}, {cfg.data.image_size}px, "
              f"{cfg.data.channels} channel(s)) on {cfg.data.source} -> {run_dir}", flush=True)
    if init is not None:
        init_from.apply(trainer, init, quiet=log_format == "quiet")
    return fit_until_stopped(trainer)  # SIGINT/SIGTERM: save, print the resume command, exit 0


def resume(run_dir: Path, log_format: str = "bar", overrides: list[str] | None = None, force: bool = False,
           rank: int = 0, world_size: int = 1) -> Path:
    # Rank 0 holds the run's lock from before it reads anything until training ends: a second
    # `train --resume` of the run (a requeued job) is refused here, before it writes anything.
    lock = RunLock(run_dir, "train --resume").acquire() if rank == 0 else None
    try:
        return _resume(run_dir, log_format, overrides, force, rank, world_size)
    finally:
        if lock is not None:
            lock.release()


def _resume(run_dir: Path, log_format: str, overrides: list[str] | None, force: bool, rank: int,
            world_size: int) -> Path:
    saved, facts = load_run_config(run_dir)
    distributed.setup(saved, rank, world_size)
    distributed.check_resume_scale(saved, facts, world_size, force)
    log_format = log_format if rank == 0 else "quiet"
    cfg = from_dict(apply_overrides(saved.to_dict(), overrides or [])) if overrides else saved
    if world_size != facts.world_size:  # --force: record the new scale, keep the learning rates
        facts = facts.at_scale(world_size, cfg.data.batch_size)
    changed = {k: v for k, v in config_diff(saved, cfg).items() if k not in RESUME_MAY_CHANGE}
    if changed and not force:
        lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ConfigError(f"resuming {run_dir} with a changed config would make it a different run:\n{lines}\n"
                          "Start a new run instead, or pass --force to resume anyway.")
    # The weights cannot load into another architecture (even with --force): say so before config.yaml changes.
    nets.check_architecture(nets.architecture_id(saved), cfg, source=f"the checkpoints of {run_dir}")
    preflight(cfg)  # what the overrides ask for (eval.every's extras, the speed switches) works here
    store = CheckpointStore(RunDir(run_dir).checkpoints)
    # Every rank resumes from the checkpoint rank 0 picked (a newer one may be half-written meanwhile).
    found = distributed.broadcast_object(store.latest_valid() if rank == 0 else None)
    if found is None:
        raise ConfigError(f"{run_dir} has no valid checkpoint to resume from (checkpoints/manifest.json lists none "
                          "that passes its checksum); start the run again")
    checkpoint, entry = found
    if rank == 0:
        trim_logs(run_dir, entry["step"])
        # What a killed writer left half-written (a report, a grid, an eval file): its finished twin is intact.
        remove_stale_temporaries(run_dir, recursive=True)
        # A run saved before run.json had its facts in config.yaml: both files are written in today's form.
        if cfg != saved or not RunDir(run_dir).facts.is_file():
            save_config(cfg, run_dir)
        save_facts(facts, run_dir)
    trainer = Trainer(cfg, run_dir, log_format=log_format, rank=rank, world_size=world_size, facts=facts)
    trainer.callbacks = default_callbacks(cfg, trainer)
    trainer.resume_from(checkpoint)
    if log_format != "quiet":
        print(f"ganforge: resuming {run_dir} from {checkpoint.name}", flush=True)
    return fit_until_stopped(trainer)  # SIGINT/SIGTERM: save, print the resume command, exit 0
