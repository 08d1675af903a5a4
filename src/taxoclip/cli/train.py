"""`taxoclip train CONFIG.yaml [section.key=value ...] [--resume]`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="mixed-text-type contrastive training (CPU to torchrun)",
        description="Train a CLIP model on taxoclip shards with a recipe from configs/train/. "
                    "Several processes: torchrun --nproc_per_node N -m taxoclip train CONFIG.yaml",
    )
    parser.add_argument("config", help="recipe YAML, e.g. configs/train/tiny-cpu.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="recipe overrides such as optim.lr=3e-4 data.workers=4 run.dir=runs/train/x")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in run.dir from its newest step checkpoint")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import load_config, train

    config = load_config(args.config, args.overrides)
    train(config, resume=args.resume)
    return 0
