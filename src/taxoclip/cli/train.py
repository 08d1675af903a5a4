"""`taxoclip train CONFIG.yaml`."""

from __future__ import annotations

from .common import not_yet


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="mixed-text-type contrastive training (CPU to torchrun)")
    parser.set_defaults(func=not_yet(6, "train"))
