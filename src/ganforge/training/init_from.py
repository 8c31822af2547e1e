"""Fine-tuning: a **new** run whose networks start from earlier weights (``train --init-from SOURCE``).

What starts from the source and what starts fresh:

- G, D and the EMA generator come from the source (an EMA the source did not keep starts from its G);
- the optimisers, the step counter, the learning-rate and augmentation schedules, the divergence
  guard and the data order start fresh, exactly as in any new run;
- ``config.yaml`` records the source (``train.init_from``, resolved to a path), so the run can be repeated
  from its config alone, and ``run.json`` the step its weights were saved at (the run's facts, ``init_from_step``).

A source is a run directory (its newest valid checkpoint; ``generator.pt`` when it has none), a
checkpoint or ``generator.pt`` file, an export folder (``ganforge export``), a run's name, or ``latest``.
``generator.pt`` and exports hold the generator only (the EMA copy when the run kept one): D then starts
from fresh weights, and the run says so (printed, in ``config.yaml``'s notes and in ``summary.json``).

The weights must fit the model the new config builds: the same architecture (``nets.architecture_id``:
model, resolution, channels, widths, every layer-changing option).  Without ``--preset`` / ``--config``
the new run takes the source's own config, so only the data (``--data``) and what is overridden change.
Everything is loaded without running code: checkpoints with ``torch.load(weights_only=True)``, exports
from safetensors.

``--resume`` is another thing: it continues the *same* run exactly (optimisers, step, schedules).
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

from ganforge import nets
from ganforge.config import Config, ConfigError, apply_overrides, from_dict
from ganforge.runfiles import RunDir, resolve_source, split_saved_config
from ganforge.storage import CheckpointError, CheckpointStore, safe_load

#: Architecture keys, as the config key a user would set.
_CONFIG_KEY = {"model": "model.name", "image_size": "data.image_size", "channels": "data.channels"}


@dataclass
class InitSource:
    """Weights to start a new run from."""

    path: Path  # the file or export folder the weights were read from
    kind: str  # "checkpoint", "generator" or "export"
    cfg: Config  # the config the weights were trained with
    step: int | None  # the step they were saved at (None: the file does not say)
    G: dict
    D: dict | None  # None: the source holds no discriminator (D starts fresh)
    G_ema: dict | None
    architecture: dict

    @property
    def has_discriminator(self) -> bool:
        return self.D is not None

    def describe(self) -> str:
        at = f"step {self.step}" if self.step is not None else "step unknown"
        return f"{self.path} ({self.kind}, {at})"


def locate(spec: str | Path, runs_dir: str | Path = "runs") -> Path:
    """The path that ``--init-from`` names: a path as given, a run's folder name or ``--name``, or ``latest``."""
    return Path(resolve_source(spec, runs_dir))


_last: tuple[tuple, InitSource] | None = None  # the CLI checks the source, then the run loads it: read once


def load_source(path: str | Path) -> InitSource:
    """Read the weights at ``path`` (see the module's docstring for what it may be)."""
    global _last
    path = Path(path)
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError:
        key = None
    if key is not None and _last is not None and _last[0] == key:
        return _last[1]
    source = _load_source(path)
    _last = (key, source) if key is not None else None
    return source


def _load_source(path: Path) -> InitSource:
    if path.is_dir():
        if (path / "generator.safetensors").is_file():
            return _from_export(path)
        if not RunDir(path).config.is_file():
            raise ConfigError(f"--init-from {path}: this folder is neither a ganforge run (no config.yaml) nor an "
                              "export (no generator.safetensors)")
        found = CheckpointStore(RunDir(path).checkpoints).latest_valid(warn=lambda *_: None)
        if found is not None:
            path = found[0]
        elif RunDir(path).generator.is_file():
            path = RunDir(path).generator
        else:
            raise ConfigError(f"--init-from {path}: the run has no valid checkpoint and no generator.pt yet "
                              "(it stopped before its first save); choose another source")
    if not path.is_file():
        raise ConfigError(f"--init-from {path} does not exist: give a run directory, a checkpoint or generator "
                          "file, an export folder, a run's name or 'latest'")
    state = safe_load(path, map_location="cpu")
    if not isinstance(state, dict) or "config" not in state or "G" not in state:
        raise CheckpointError(f"--init-from {path} is not a ganforge checkpoint or generator file")
    cfg = from_dict(split_saved_config(state["config"])[0])
    generator_only = state.get("format") == "ganforge-generator-1" or "D" not in state
    step = state.get("step")
    if step is None and isinstance(state.get("progress"), dict):
        step = state["progress"].get("step")
    return InitSource(path=path, kind="generator" if generator_only else "checkpoint", cfg=cfg,
                      step=int(step) if step is not None else None, G=state["G"],
                      D=None if generator_only else state["D"], G_ema=state.get("G_ema"),
                      architecture=state.get("architecture") or nets.architecture_id(cfg))


def _from_export(folder: Path) -> InitSource:
    import json

    from ganforge.export import CONFIG, load_export

    G, cfg, _ = load_export(folder)  # checksum, safetensors, and the shapes against config.json
    meta = json.loads((folder / CONFIG).read_text())
    step = meta.get("step")
    return InitSource(path=folder, kind="export", cfg=cfg, step=int(step) if step is not None else None,
                      G=G.state_dict(), D=None, G_ema=None,
                      architecture=meta.get("architecture") or nets.architecture_id(cfg))


def check_fits(source: InitSource, cfg: Config) -> None:
    """Refuse a config whose model the source's weights cannot start, naming both sides of every difference."""
    new = nets.architecture_id(cfg)
    old = source.architecture
    differs = {k: (old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]}
    if not differs:
        return
    lines = "\n".join(f"  {_CONFIG_KEY.get(k, 'model.' + k)}: the source has {a!r}, this run {b!r}"
                      for k, (a, b) in differs.items())
    fix = " ".join(f"{_CONFIG_KEY.get(k, 'model.' + k)}={_yaml(a)}" for k, (a, _) in differs.items())
    raise ConfigError(
        f"--init-from {source.path}: its weights are for another architecture than this run builds:\n{lines}\n"
        f"Fine-tuning starts the same networks from those weights: set {fix} (without --preset and --config the "
        "run takes the source's own settings), or train from scratch without --init-from.")


def _yaml(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v).replace(" ", "")


def fine_tune_config(source: InitSource, overrides: list[str]) -> Config:
    """A new run's config from the source's own, with ``overrides`` (``data.source=NEW``, ...) on top.

    What belonged to the source run and not to its model is reset: its notes and any init_from of its own
    (its facts, such as its class names, stay with it: the new run records its own)."""
    data = copy.deepcopy(source.cfg.to_dict())
    data["notes"] = []
    data["train"]["init_from"] = ""
    return from_dict(apply_overrides(data, overrides))


def prepare(cfg: Config, runs_dir: str | Path = "runs") -> tuple[Config, InitSource | None]:
    """For a new run with ``train.init_from``: the source, checked against ``cfg`` (its step goes into the new
    run's facts), and the config with the source resolved to a path and a note saying what starts from it
    (``cfg`` otherwise)."""
    if not cfg.train.init_from:
        return cfg, None
    path = locate(cfg.train.init_from, runs_dir)
    source = load_source(path)
    check_fits(source, cfg)
    cfg = copy.deepcopy(cfg)
    cfg.train.init_from = str(source.path.resolve())
    cfg.notes = [n for n in cfg.notes if not n.startswith("init_from: ")] + [f"init_from: {summary_line(source, cfg)}"]
    return cfg, source


def summary_line(source: InitSource, cfg: Config) -> str:
    parts = ["G"]
    if source.has_discriminator:
        parts.append("D")
    if cfg.ema.enabled:
        parts.append("the EMA generator" + ("" if source.G_ema is not None or source.kind != "checkpoint"
                                            else " (from its G: the source kept no EMA)"))
    started = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    line = (f"fine-tuning from {source.describe()}: {started} start from its weights; the optimisers, the step "
            "counter and the schedules start fresh")
    if not source.has_discriminator:
        what = "an export" if source.kind == "export" else "a generator file"
        line += f". D starts from fresh weights: {what} holds the generator only"
    return line


def apply(trainer, source: InitSource, quiet: bool = False) -> None:
    """Load the source's weights into a freshly built trainer (before training starts)."""
    def load(module, state, what):
        try:
            module.load_state_dict(state)
        except RuntimeError as e:  # shapes the architecture id did not catch (files from older versions)
            first = str(e).strip().splitlines()[0][:300]
            raise CheckpointError(f"--init-from {source.path}: {what} does not fit this run's {what} ({first})") from None

    load(trainer.G, source.G, "the generator")
    if source.D is not None:
        load(trainer.D, source.D, "the discriminator")
    if trainer.ema is not None:
        load(trainer.ema.model, source.G_ema if source.G_ema is not None else source.G, "the EMA generator")
    info = {"source": str(source.path), "kind": source.kind, "step": source.step,
            "discriminator": "from the source" if source.D is not None else "fresh (the source holds no D)"}
    trainer.summary_extra = {**trainer.summary_extra, "init_from": info}
    if not quiet and trainer.is_main:
        print(f"ganforge: {summary_line(source, trainer.cfg)}", file=sys.stdout, flush=True)
