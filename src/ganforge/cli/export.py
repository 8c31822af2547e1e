"""ganforge export: a run's generator as safetensors plus a JSON config, safe to share and to load."""
from __future__ import annotations

import argparse

from ganforge.cli.common import SOURCE_HELP, add_runs_dir


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write a run's generator as safetensors + JSON config (no pickle) for sharing",
                       description="Write RUN's generator to OUT/generator.safetensors and OUT/config.json. "
                                   "'ganforge sample OUT' generates from it; loading it never runs code.")
    p.add_argument("run", metavar="RUN", help=SOURCE_HELP)
    p.add_argument("out", metavar="OUT", help="folder to write the export into")
    p.add_argument("--which", choices=["auto", "final", "best", "latest"], default="auto",
                   help="which generator: final (generator.pt), best, latest checkpoint; auto: the first that exists")
    add_runs_dir(p)
    p.add_argument("--force", action="store_true", help="replace an export already in OUT")
    return p


def run(args) -> int:
    from ganforge.export import export_generator
    from ganforge.runfiles import resolve_source

    source = resolve_source(args.run, args.runs_dir)
    out = export_generator(source, args.out, which=args.which, overwrite=args.force)
    print(f"exported the generator of {source} to {out}/ (generator.safetensors, config.json); "
          f"sample from it with: ganforge sample {out}")
    return 0
