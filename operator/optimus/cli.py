"""The `optimus` command line: `optimus simulate | fit | plan | version`.

Each subcommand lives in its own module (optimus.cli_fit, optimus.cli_simulate,
optimus.cli_plan) that registers its parser here; this module only dispatches. Exit codes:
0 success, 2 bad input (a message names the file, the line and the fix), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from optimus import __version__

#: modules that each define `register(subparsers) -> None`; the parser they add sets `func`.
SUBCOMMAND_MODULES = ("optimus.cli_fit", "optimus.cli_simulate", "optimus.cli_plan")


class InputError(Exception):
    """Bad user input: the message names what is wrong and how to fix it (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optimus",
        description="Elastic deep-learning training scheduler (after Optimus, EuroSys 2018).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    version = subparsers.add_parser("version", help="print the version")
    version.set_defaults(func=lambda _args: print(__version__) or 0)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as error:
        print(f"optimus {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
