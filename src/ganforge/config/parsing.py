"""Building a :class:`~.schema.Config` from plain data, strictly: presets shipped in the package, YAML files
and dotted ``key=value`` overrides, merged in that order; unknown keys and wrong types are errors that name
the key and the closest valid one."""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from ganforge.config.schema import Config, ConfigError
from ganforge.config.validation import validate

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def _closest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.4)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(options)}"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert the harmless cases (int -> float)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if isinstance(value, bool):
            # YAML reads on/off/yes/no as booleans: give choices spelled that way (train.compile=off) back.
            for word in (("on", "yes", "true") if value else ("off", "no", "false")):
                if word in allowed:
                    return word
        if value in allowed:
            return value
        # "1" from a command line for Literal[1, 3]
        for a in allowed:
            if str(a) == str(value):
                return a
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin is list:
        (item_tp,) = get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, str) and item_tp is str:
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not -2**63 <= value < 2**63:  # torch and NumPy take 64-bit integers (seeds, sizes, counts)
                raise ConfigError(f"{key}: {value} is out of range (beyond a 64-bit integer)")
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        raise ConfigError(f"{key}: expected a{' finite' if number is not None else ''} number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


#: Keys measured, not taken and removed (docs/quality.md, "Rejected"), each with its off value: a saved run's
#: config.yaml that holds one at that value still loads; any other value is refused, naming the option.
RETIRED = {"loss.imle": 0.0, "loss.imle_pool": 2, "loss.imle_every": 120, "loss.imle_size": 16, "loss.imle_warmup": 0,
           "loss.feature_match_warmup": 0, "loss.feature_match_sliced": 0.0, "loss.feature_match_nearest": 0.0,
           "loss.feature_match_every": 1, "loss.feature_match_average": 0.0, "model.latent_groups_in_d": False,
           "model.projection_scale": 1.0, "data.group_batches": False}

#: Keys that ganforge itself wrote into a run's config before they moved to the run's facts
#: (:class:`ganforge.runfiles.RunFacts`, ``run.json``), each with the field that holds it now.  A user's
#: config or override that sets one is refused; a saved run's config that holds them is read with
#: :func:`ganforge.runfiles.split_saved_config`, which moves them to the facts.
WRITTEN_BY_GANFORGE = {"data.class_names": "class_names", "train.world_size": "world_size",
                       "train.effective_batch_size": "effective_batch_size", "train.init_from_step": "init_from_step"}


def _written_by_ganforge(key: str) -> ConfigError:
    return ConfigError(f"{key} is not a setting: ganforge writes it into the run's facts (run.json) while it "
                       "trains; leave it out of the config (a config.yaml saved by an earlier ganforge holds it: "
                       "delete that line)")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in data.items():
        if prefix + k in WRITTEN_BY_GANFORGE:
            raise _written_by_ganforge(prefix + k)
        if prefix + k in RETIRED and k not in names:
            if v == RETIRED[prefix + k]:
                continue  # off, as every run saved before the option was removed has it
            raise ConfigError(f"{prefix}{k} was measured, not taken and removed from ganforge (docs/quality.md, "
                              f"\"Rejected\", names the commit that removed it): leave it out of the config")
        if k not in names:
            raise ConfigError(f"unknown config key {f'{prefix}{k}'!r}{_closest(str(k), names)}")
        kwargs[k] = _coerce(v, hints[k], prefix + k)
    return cls(**kwargs)


def from_dict(data: dict, check: bool = True) -> Config:
    """``data`` as a Config, strictly; with ``check``, validated too."""
    cfg = _build(Config, data or {})
    if check:
        validate(cfg)
    return cfg


def _deep_merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += _all_keys(tp, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=10`` -> (['train', 'epochs'], 10); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value (for example train.epochs=10)")
    key, raw = text.split("=", 1)
    key = key.strip()
    valid = _all_keys(Config)
    if key in WRITTEN_BY_GANFORGE:
        raise _written_by_ganforge(key)
    if key not in valid:
        raise ConfigError(f"unknown config key {key!r}{_closest(key, valid)}")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):  # an explicit tag it cannot build: !!float nope
        value = raw
    if isinstance(value, str) and value.isascii():
        # YAML 1.1 reads 1e-4 (no dot) as a string; a user means the number.  (Python's float() would also
        # read other scripts' digits, '٣' as 3: those stay text, and a number key refuses them.)
        try:
            value = float(value)
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = _deep_merge({}, data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return data


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_dict(name: str) -> dict:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        names = preset_names()
        raise ConfigError(f"unknown preset '{name}'{_closest(name, names).replace('keys', 'presets')}")
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("preset", name)
    return data


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:  # also a tag it cannot build: !!float nope
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data or {}


def load(preset: Optional[str] = None, file: Optional[str | Path] = None,
         overrides: Optional[list[str]] = None) -> Config:
    """Preset, then file, then overrides; validated."""
    data: dict = {}
    if preset:
        data = preset_dict(preset)
    if file:
        file_data = read_yaml(file)
        if "preset" in file_data and not preset:
            data = preset_dict(file_data["preset"])
        data = _deep_merge(data, file_data)
    data = apply_overrides(data, overrides or [])
    return from_dict(data)
