"""Run directories: their file names, creating one, and finding one again from what a user typed.

This module knows no training: it imports nothing of ganforge but the config, so every layer may use it.  A run directory is ``<runs_dir>/<timestamp>_<name>/`` (the name is ``--name``, or the
preset's), never overwritten, and it is a run directory because it holds ``config.yaml``.

Every command that takes a run resolves it with :func:`resolve_run` (a run directory only: ``train
--resume``, ``report``, ``runs``) or :func:`resolve_source` (a run, or a checkpoint/generator file or an
export folder: ``sample``, ``interpolate``, ``eval``, ``export``), so ``latest``, a run's folder name and
its ``--name`` work the same way everywhere, with the same error when nothing matches.

A run's ``config.yaml`` holds what the user chose; what ganforge learns while running it (the class
folders, how many processes train it, the step fine-tuning started from) is the run's :class:`RunFacts`,
in ``run.json`` beside it and in every checkpoint, ``generator.pt`` and export.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ganforge.config import WRITTEN_BY_GANFORGE, ConfigError

#: What a run's name may look like: it becomes part of a folder name, so no separators and no dot first.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$")
#: The word that means "the newest run under the runs folder".
LATEST = "latest"
#: ``2026-11-22_10-00-00_``: the timestamp every run folder's name starts with.
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_")


class RunNotFoundError(ConfigError):
    """What the user named is not a run (or not one that can be used as asked); the message says what to do."""


class RunDir:
    """One run directory and the names of the files in it (each name is defined here only)."""

    CONFIG = "config.yaml"
    FACTS = "run.json"  # the run's RunFacts: what ganforge wrote, not what the user chose
    SUMMARY = "summary.json"
    METRICS = "metrics.jsonl"
    DIAGNOSTICS = "diagnostics.jsonl"
    DATA_ERRORS = "data_errors.txt"
    GENERATOR = "generator.pt"
    REPORT = "report.html"
    CURVES = "curves.png"
    TIMELINE_GIF = "timeline.gif"
    TIMELINE_MP4 = "timeline.mp4"
    SAMPLES = "samples"
    REAL_SAMPLES = "real_samples.png"  # a grid of real training images, as the loader prepares them
    GRIDS = "grids.jsonl"  # in samples/: each grid with its step, as written
    CHECKPOINTS = "checkpoints"
    MANIFEST = "manifest.json"  # in checkpoints/
    BEST = "best.pt"  # in checkpoints/
    TENSORBOARD = "tensorboard"
    EVAL = "eval"
    LOCK = "run.lock"  # held by the process writing the run (storage.RunLock); its note names the holder

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ the files
    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def facts(self) -> Path:
        return self.path / self.FACTS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def diagnostics(self) -> Path:
        return self.path / self.DIAGNOSTICS

    @property
    def data_errors(self) -> Path:
        return self.path / self.DATA_ERRORS

    @property
    def generator(self) -> Path:
        return self.path / self.GENERATOR

    @property
    def report(self) -> Path:
        return self.path / self.REPORT

    @property
    def curves(self) -> Path:
        return self.path / self.CURVES

    @property
    def timeline_gif(self) -> Path:
        return self.path / self.TIMELINE_GIF

    @property
    def timeline_mp4(self) -> Path:
        return self.path / self.TIMELINE_MP4

    @property
    def samples(self) -> Path:
        return self.path / self.SAMPLES

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def manifest(self) -> Path:
        return self.checkpoints / self.MANIFEST

    @property
    def best(self) -> Path:
        return self.checkpoints / self.BEST

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def eval(self) -> Path:
        return self.path / self.EVAL

    @property
    def lock(self) -> Path:
        return self.path / self.LOCK

    # ------------------------------------------------------------------ what it is
    def exists(self) -> bool:
        return is_run_dir(self.path)

    def has_checkpoint(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("step_*.pt"))

    @classmethod
    def containing(cls, path: str | Path) -> "RunDir | None":
        """The run directory that ``path`` is (or is inside: a checkpoint, a generator file), if any."""
        for folder in [Path(path), *Path(path).parents]:
            if is_run_dir(folder):
                return cls(folder)
        return None


@dataclass
class RunFacts:
    """What ganforge learns while it trains a config, kept apart from the config (what the user chose):
    ``run.json`` in the run directory, and ``facts`` in every checkpoint, ``generator.pt`` and export."""

    class_names: list[str] = field(default_factory=list)  # a conditional run's class folders, in label order
    world_size: int = 1  # processes that train the run (torchrun --nproc_per_node x nodes)
    effective_batch_size: int = 0  # data.batch_size x world_size (0: not recorded)
    init_from_step: int = 0  # the step of the weights train.init_from started from

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict | None) -> "RunFacts":
        """The facts a file recorded; a fact it lacks keeps its default, a key this version has no fact for is
        passed over (the file may come from a later ganforge)."""
        data = data if isinstance(data, dict) else {}
        facts = cls()
        for f in dataclasses.fields(cls):
            if data.get(f.name) is not None:
                value = data[f.name]
                setattr(facts, f.name, [str(v) for v in value] if f.name == "class_names" else int(value))
        return facts

    def at_scale(self, world_size: int, batch_size: int) -> "RunFacts":
        """These facts for a run trained by ``world_size`` processes of ``batch_size`` images each."""
        return dataclasses.replace(self, world_size=world_size, effective_batch_size=batch_size * world_size)


def split_saved_config(config: dict, facts: dict | None = None) -> tuple[dict, RunFacts]:
    """A saved config mapping (config.yaml, a checkpoint's or an export's ``config``) without the keys that
    earlier versions of ganforge wrote into it (:data:`~ganforge.config.WRITTEN_BY_GANFORGE`), and the run's
    facts: ``facts`` where the file recorded them, else those keys, so a run saved before ``run.json``
    existed reads as one saved after."""
    config = copy.deepcopy(config) if isinstance(config, dict) else {}
    old = {}
    for dotted, name in WRITTEN_BY_GANFORGE.items():
        section, key = dotted.split(".")
        if isinstance(config.get(section), dict) and key in config[section]:
            old[name] = config[section].pop(key)
    return config, RunFacts.from_dict(facts if facts is not None else old)


def read_facts(run_dir: str | Path, config: dict | None = None) -> RunFacts:
    """The facts of the run in ``run_dir``: its ``run.json``, or for a run saved without one, the keys its
    ``config.yaml`` (``config``: that file's mapping, when the caller has read it) held."""
    run = RunDir(run_dir)
    if run.facts.is_file():
        try:
            return RunFacts.from_dict(json.loads(run.facts.read_text()))
        except ValueError as e:
            raise ConfigError(f"{run.facts} is not valid JSON ({e}): the run's facts are damaged") from None
    if config is None:
        config = yaml.safe_load(run.config.read_text()) if run.config.is_file() else {}
    return split_saved_config(config)[1]


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RunDir.CONFIG).is_file()


def check_name(name: str) -> str:
    """A run name as ``--name`` gives it, checked: it becomes part of a folder name under the runs folder."""
    if not NAME_PATTERN.match(name or ""):
        raise ConfigError(f"run name {name!r} cannot be used: give letters, digits, '.', '_', '+' or '-' (up to 80, "
                          "not starting with '.' or '-', no '/'), for example --name celeba-wide")
    return name


def new_run_dir(runs_dir: str | Path, name: str) -> Path:
    """A new, empty ``runs_dir/<timestamp>_<name>/`` (``-1``, ``-2``, ... appended if that exists).

    ``name`` is made safe for a folder name (a preset named in someone's YAML may hold anything): it can
    never lead outside ``runs_dir``.
    """
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", str(name)).lstrip(".-")[:80] or "run"
    runs_dir = Path(runs_dir)
    base = runs_dir / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{name}"
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            path = base.with_name(f"{base.name}-{k}")
            k += 1


def list_runs(runs_dir: str | Path) -> list[Path]:
    """Run directories directly under ``runs_dir``, in name order (names start with their timestamp)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and is_run_dir(p))


def _newest(runs: list[Path]) -> Path:
    return max(runs, key=lambda p: (p.stat().st_mtime, p.name))


def _named(name: str, runs: list[Path]) -> list[Path]:
    """Runs whose folder is ``<timestamp>_<name>`` (or ``...-k``, a second run of that name in one second)."""
    return [p for p in runs if _STAMP.match(p.name) and re.fullmatch(re.escape(name) + r"(-\d+)?", _STAMP.sub("", p.name))]


def _not_found(spec: str, runs_dir: Path, files_too: bool) -> RunNotFoundError:
    files = ", a checkpoint or generator file, or an export folder" if files_too else ""
    return RunNotFoundError(
        f"{spec} is not a ganforge run directory (no {RunDir.CONFIG} there) nor the name of a run under {runs_dir}/: "
        f"give a run directory, a run's name, or '{LATEST}'{files} (--runs-dir says where the runs are); "
        f"`ganforge runs {runs_dir}` lists the runs")


def resolve_run(spec: str | Path, runs_dir: str | Path = "runs", need_checkpoint: bool = False) -> Path:
    """The run directory that ``spec`` names: a path, a folder name under ``runs_dir``, a run's ``--name``
    (the newest run of that name), or ``latest`` (the newest run under ``runs_dir``).

    With ``need_checkpoint``, ``latest`` and names pass over runs that have no checkpoint yet (a run that
    failed before its first save), and a path to such a run is an error saying so.
    """
    text, runs_dir = str(spec), Path(runs_dir)
    runs = list_runs(runs_dir)
    if need_checkpoint:
        usable = [p for p in runs if RunDir(p).has_checkpoint()]
    else:
        usable = runs
    if text == LATEST:
        if not usable:
            what = "run directories with a checkpoint" if need_checkpoint else "run directories"
            raise RunNotFoundError(f"{LATEST}: no {what} under {runs_dir}/; train one with `ganforge train`, or give "
                                   "a run's path (or --runs-dir where the runs are)")
        return _newest(usable)
    found = None
    for candidate in (Path(text).expanduser(), runs_dir / text):
        if is_run_dir(candidate):
            found = candidate
            break
    if found is None and NAME_PATTERN.match(text):
        named = _named(text, usable) or _named(text, runs)
        if named:
            found = _newest(named)
    if found is None:
        raise _not_found(text, runs_dir, files_too=False)
    if need_checkpoint and not RunDir(found).has_checkpoint():
        raise RunNotFoundError(f"{found} has no checkpoint yet (it stopped before its first save): nothing to "
                               "continue from; start the run again")
    return found


def resolve_source(spec: str | Path, runs_dir: str | Path = "runs") -> Path:
    """What a generator is read from: an existing path as given (a run directory, a checkpoint or
    generator file, an export folder: the loader checks which), else a run as :func:`resolve_run` finds it."""
    text = str(spec)
    path = Path(text).expanduser()
    if text != LATEST and path.exists():
        return path
    try:
        return resolve_run(text, runs_dir)
    except RunNotFoundError:
        if text == LATEST:
            raise
        raise _not_found(text, Path(runs_dir), files_too=True) from None
