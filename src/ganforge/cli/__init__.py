"""The ``ganforge`` command: one module per subcommand, each with ``add_parser`` and ``run``."""
from __future__ import annotations

import argparse
import sys
from importlib import import_module

#: Subcommand modules under ganforge.cli, in the order ``ganforge --help`` lists them.
COMMANDS = ["train", "sample", "describe", "prepare", "report", "interpolate", "runs", "export", "eval"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ganforge", description="Train GANs on image folders and zips.")
    parser.add_argument("--version", action="version", version=f"ganforge {__import__('ganforge').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = import_module(f"ganforge.cli.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run, command=name)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments of ``argv``, with a subcommand's options and positionals in any order.

    ``ganforge train --preset P data.image_size=32 --data DIR train.epochs=1`` has overrides on both sides
    of an option: a plain parse stops collecting them at ``--data``, ``parse_intermixed_args`` does not.
    The top-level parser cannot parse intermixed (its subcommands are one positional that takes the
    rest), so the subcommand's own parser parses what follows the command's name.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if argv and argv[0] in subparsers.choices:
        return subparsers.choices[argv[0]].parse_intermixed_args(argv[1:])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from ganforge.config import ConfigError
    from ganforge.data import DataError
    from ganforge.storage import CheckpointError

    parser = build_parser()
    args = parse(parser, argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return args._run(args) or 0
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"ganforge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a read-only place: one paragraph on what to do, no traceback
        from ganforge.storage import storage_error_message
        message = storage_error_message(e)
        if message is None:
            raise
        print(f"ganforge {args.command}: error: {message}", file=sys.stderr)
        return 2
