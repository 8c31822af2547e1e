"""Generator files: loading a generator from a run, a checkpoint, a generator file or an export, and exporting one.

Every way of getting a trained generator back goes through :func:`load_generator` (``sample``,
``interpolate``, ``eval``, ``export``, the metrics), which knows each format itself: there is no registry
of loaders to fill at import time.

An export is a trained generator for sharing: ``generator.safetensors`` plus ``config.json``, nothing executable.

Checkpoints (``.pt``) are pickles; ganforge loads them with ``weights_only=True``, but other tools may
not, so a file meant to travel is better in a format that cannot carry code at all.  An export folder:

- ``generator.safetensors``: the generator's tensors (the EMA copy when the run kept one),
- ``config.json``: the run's full config, its facts (class names, ...), the architecture the config describes,
  and the SHA-256 of the weights.

``ganforge sample out/`` (and :func:`load_generator`) accept such a folder: the
config is plain JSON, validated like any config, and the tensors are checked against the architecture
before they are loaded.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ganforge import nets
from ganforge.config import Config, ConfigError, from_dict
from ganforge.runfiles import RunDir, RunFacts, split_saved_config
from ganforge.storage import CheckpointError, CheckpointStore, atomic_write_bytes, atomic_write_text, safe_load

FORMAT = "ganforge-export-1"
WEIGHTS = "generator.safetensors"
CONFIG = "config.json"


def export_generator(source: str | Path, out: str | Path, which: str = "auto", overwrite: bool = False) -> Path:
    """Write the generator of ``source`` (a run directory or a checkpoint/generator file) to ``out``."""
    from safetensors.torch import save


    out = Path(out)
    if (out / WEIGHTS).exists() and not overwrite:
        raise ConfigError(f"{out} already holds an export ({WEIGHTS}); choose another folder or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give a folder to export into")
    G, cfg, facts = load_generator(source, device="cpu", which=which)
    # Contiguous copies that share no memory: safetensors stores each tensor once, by value.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in G.state_dict().items()}
    data = save(tensors, metadata={"format": FORMAT})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / WEIGHTS, data)
    meta = {"format": FORMAT, "architecture": nets.architecture_id(cfg), "sha256": hashlib.sha256(data).hexdigest(),
            "source": str(source), "config": cfg.to_dict(), "facts": facts.to_dict()}
    atomic_write_text(out / CONFIG, json.dumps(meta, indent=2))
    return out


def load_export(folder: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Config, RunFacts]:
    """The generator (on ``device``), config and run facts of an export folder; no code is run from either file."""
    from safetensors import SafetensorError
    from safetensors.torch import load


    folder = Path(folder)
    try:
        meta = json.loads((folder / CONFIG).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} has {WEIGHTS} but no {CONFIG}: copy both files of the export") from None
    except ValueError as e:
        raise CheckpointError(f"{folder / CONFIG} is not valid JSON ({e}); export the run again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{folder / CONFIG} is not a ganforge export config (format {FORMAT})")
    config, facts = split_saved_config(meta["config"], meta.get("facts"))  # exports before "facts": in the config
    cfg = from_dict(config)
    data = (folder / WEIGHTS).read_bytes()
    if meta.get("sha256") and hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{folder / WEIGHTS} does not match the checksum in {CONFIG}: the file is damaged "
                              "or was changed; copy or export it again")
    try:
        tensors = load(data)
    except SafetensorError as e:
        raise CheckpointError(f"{folder / WEIGHTS} is not a readable safetensors file ({e})") from None
    G, _ = nets.build(cfg)
    expected = G.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{folder / WEIGHTS} does not fit the generator that {CONFIG} describes ({nets.architecture_id(cfg)}): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}")
    G.load_state_dict(tensors)
    return G.to(device), cfg, facts


def load_generator(path: str | Path, device: str | torch.device = "cpu",
                   which: str = "auto") -> tuple[torch.nn.Module, Config, RunFacts]:
    """A generator (eval-ready, no training state), its config and its run's facts (the class names of a
    conditional run), from a run directory, a checkpoint file, a generator file, or an export folder.
    Loading never runs code from the file (``weights_only=True``)."""
    path = Path(path)
    if path.is_dir():
        if (path / WEIGHTS).is_file():
            return load_export(path, device)
        candidates = []
        if which in ("auto", "final"):
            candidates.append(RunDir(path).generator)
        if which in ("auto", "best"):
            candidates.append(RunDir(path).best)
        found = CheckpointStore(RunDir(path).checkpoints).latest_valid(warn=lambda *_: None)
        if found and which in ("auto", "latest"):
            candidates.append(found[0])
        candidates = [c for c in candidates if c.is_file()]
        if not candidates:
            raise ConfigError(f"{path} holds no generator: expected generator.pt or checkpoints/ from a ganforge run")
        path = candidates[0]
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: give a run directory, a checkpoint or generator file, or an export folder")
    state = safe_load(path, map_location="cpu")
    if not isinstance(state, dict) or "config" not in state or "G" not in state:
        raise ConfigError(f"{path} is not a ganforge checkpoint or generator file")
    # Files saved before "facts" existed hold them in their config (split_saved_config moves them).
    config, facts = split_saved_config(state["config"], state.get("facts"))
    cfg = from_dict(config)
    nets.check_architecture(state.get("architecture"), cfg, source=str(path))
    G, _ = nets.build(cfg)
    G.load_state_dict(state.get("G_ema") or state["G"])
    return G.to(device), cfg, facts
