"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse


def add_model_argument(parser: argparse.ArgumentParser, default: str = "bioclip") -> None:
    parser.add_argument(
        "--model", default=default,
        help="bioclip | bioclip-2 | mini | hf-hub:ORG/NAME[@REV] | DIR | ARCH[:TAG|:WEIGHTS] (default: %(default)s)",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default: %(default)s)")

