"""`taxoclip predict`, `taxoclip embed`, `taxoclip taxa`."""

from __future__ import annotations

from .common import not_yet


def register(subparsers) -> None:
    for name, help_text in (("predict", "name the organisms in photos (tree of life or custom labels)"),
                            ("embed", "write image embeddings (Parquet)"),
                            ("taxa", "list a model's label bank as CSV")):
        parser = subparsers.add_parser(name, help=help_text)
        parser.set_defaults(func=not_yet(4, name))
