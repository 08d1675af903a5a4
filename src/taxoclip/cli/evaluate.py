"""`taxoclip eval ...`."""

from __future__ import annotations

from .common import not_yet


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="zero-shot, few-shot, suites, hierarchy, ablations")
    parser.set_defaults(func=not_yet(7, "eval"))
