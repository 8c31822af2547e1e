"""The current recipe's resolved config for a spread of data facts and devices: the cases, and the
snapshot in recipe_snapshot.json that tests/test_recipe.py compares today's ``auto`` with.

Regenerate the snapshot (only when the recipe is meant to change, and say so in the commit)::

    PYTHONPATH=src python tests/recipe_cases.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("recipe_snapshot.json")

#: (images, median shorter side, channels): few to many, grey and colour, 28 to 256 px.
FACTS = [(count, side, channels) for count in (40, 500, 5_000, 60_000) for side in (28, 64, 100, 256)
         for channels in (1, 3)]
DEVICES = ("cpu", "cuda")
#: Keys a user gives, which the recipe leaves as given and builds around.
GIVEN = [[], ["data.image_size=128"], ["model.name=dcgan"], ["data.batch_size=16"], ["data.channels=4"],
         ["loss.feature_match=0"], ["model.latent_groups=0"], ["data.hflip=0"]]


def cases() -> list[tuple[str, tuple[int, int, int], str, list[str]]]:
    """(id, facts, device type, overrides) for every case the snapshot holds."""
    out = []
    for facts in FACTS:
        for device in DEVICES:
            out.append((f"{facts[0]}x{facts[1]}px-{facts[2]}ch-{device}", facts, device, []))
    for given in GIVEN[1:]:
        for facts in ((500, 64, 3), (5_000, 64, 3), (60_000, 256, 3)):
            for device in DEVICES:
                out.append((f"{facts[0]}x{facts[1]}px-{facts[2]}ch-{device}-{'-'.join(given)}", facts, device, given))
    return out


def resolved(facts: tuple[int, int, int], device: str, given: list[str]) -> dict:
    """Today's ``auto`` for these facts, device and given keys, as a plain dict without its notes; or
    ``{"error": message}`` where the config it makes is refused."""
    from ganforge import recipe
    from ganforge.config import ConfigError
    try:
        cfg = recipe.resolve(recipe.DataFacts(*facts), device, "images", given)
    except ConfigError as e:
        return {"error": str(e)}
    out = cfg.to_dict()
    out.pop("notes")
    return out


def main() -> int:
    snapshot = {case_id: resolved(facts, device, given) for case_id, facts, device, given in cases()}
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    print(f"{len(snapshot)} cases written to {SNAPSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
