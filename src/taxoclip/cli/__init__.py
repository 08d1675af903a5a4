"""The `taxoclip` command: one subcommand per stage, each a thin layer over the Python API.

Only argparse is imported up front; every stage imports its heavy libraries inside `run`,
so that `taxoclip --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

STAGES: tuple[str, ...] = ("taxonomy", "predict", "data", "train", "evaluate", "dev")
"""CLI modules in help order; each has `register(subparsers)` adding its subcommands."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taxoclip",
        description="BioCLIP for the tree of life: name organisms in photos, build data, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"taxoclip {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in STAGES:
        importlib.import_module(f"{__name__}.{module_name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import TaxoclipError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        result = args.func(args)
    except TaxoclipError as err:
        print(f"taxoclip: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taxoclip: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(result or 0)
