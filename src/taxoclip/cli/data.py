"""`taxoclip data build|check|stats`."""

from __future__ import annotations

from .common import not_yet


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="build TreeOfLife-style webdataset shards from photo collections")
    parser.set_defaults(func=not_yet(5, "data"))
