"""Class names of a conditional run: stored with it, used to pick a class by name, shown on its grids.

A conditional run (``data.labels=true``, ``model.num_classes=N``) takes its classes from the first
folder level of the data, sorted by name: class 0 is the first folder, and so on.  The trainer writes
those names into the run's facts (:class:`ganforge.runfiles.RunFacts`: ``run.json``, every checkpoint,
``generator.pt`` and an export carry them) and into ``summary.json`` as ``classes``; a run saved before
the facts existed has them in its config as ``data.class_names``, read into its facts when it is loaded.

The fixed-noise grids of a conditional run give each row one class (row r shows class r mod N), so the
report can label its rows.
"""
from __future__ import annotations

import math

import torch

from ganforge.config import Config, ConfigError


def resolve_class(value: str | int | None, cfg: Config, names: list[str]) -> int | None:
    """A class given by ``--class``: an index (``2``) or a name (``bags``, exactly as its folder is called,
    or differing only in case) among ``names`` (the run's facts' ``class_names``).  None passes through (no
    class asked for)."""
    if value is None:
        return None
    n = cfg.model.num_classes
    if not n:
        raise ConfigError(f"--class {value}: this generator is not conditional (model.num_classes=0), so it has "
                          "no classes to choose from; leave --class out")
    names = list(names or [])
    text = str(value).strip()
    if text in names:
        return names.index(text)
    folded = [i for i, name in enumerate(names) if name.casefold() == text.casefold()]
    if len(folded) == 1:
        return folded[0]
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < n:
            raise ConfigError(f"--class {index} is out of range: the model has {n} classes (0 to {n - 1})"
                              + (f": {_listing(names)}" if names else ""))
        return index
    if not names:
        raise ConfigError(f"--class {text!r}: this run stored no class names (it was trained before ganforge kept "
                          f"them); give an index from 0 to {n - 1}")
    import difflib
    close = difflib.get_close_matches(text, names, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"--class {text!r} is not one of the run's classes{hint} The classes are: {_listing(names)} "
                      "(a name, or its index)")


def _listing(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(f"{i} {name}" for i, name in enumerate(names[:limit]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def grid_columns(n: int) -> int:
    """Images per row of a grid of ``n`` (what :func:`ganforge.sampling.save_grid` uses)."""
    return max(1, int(math.sqrt(n)))


def fixed_labels(n: int, num_classes: int) -> torch.Tensor:
    """The classes of the ``n`` fixed-noise images: one class per grid row, cycling through the classes."""
    return (torch.arange(n) // grid_columns(n)) % num_classes


def row_labels(cfg_or_dict, names: list[str], n: int | None = None) -> list[str]:
    """The class name of each row of a conditional run's fixed-noise grid ([] for unconditional runs), from
    ``names`` (the run's facts' ``class_names``; ``class 0``, ``class 1``, ... where they are not one per class).

    Takes a :class:`Config` or a run's config as a plain mapping (what the report reads)."""
    names = list(names or [])
    if isinstance(cfg_or_dict, Config):
        num, n = cfg_or_dict.model.num_classes, n or cfg_or_dict.train.n_fixed_noise
    else:
        d = cfg_or_dict or {}
        num = int((d.get("model") or {}).get("num_classes") or 0)
        n = n or int((d.get("train") or {}).get("n_fixed_noise") or 64)
    if not num:
        return []
    if len(names) != num:
        names = [f"class {i}" for i in range(num)]
    rows = math.ceil(n / grid_columns(n))
    return [names[r % num] for r in range(rows)]
