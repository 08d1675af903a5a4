"""`taxoclip dev make-standin`: tiny models in the official layouts, for tests and benchmarks."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("dev", help="developer tools (stand-in checkpoints)")
    sub = parser.add_subparsers(dest="dev_command", metavar="ACTION")
    standin = sub.add_parser("make-standin", help="write a random open_clip model in the official hub layout")
    standin.add_argument("output", help="directory to write")
    standin.add_argument("--arch", default="tiny", help="tiny (default) or an open_clip architecture, e.g. ViT-B-16")
    standin.add_argument("--seed", type=int, default=0)
    standin.add_argument("--labels-csv", help="build a real tree-of-life bank from the taxa of this labels table")
    standin.add_argument("--random-bank", type=int, default=0, metavar="N", help="a random bank of N synthetic taxa")
    standin.add_argument("--weights-format", choices=("safetensors", "bin"), default="safetensors")
    standin.add_argument("--hub-cache", help="also install it into this Hugging Face cache directory ...")
    standin.add_argument("--repo", default="imageomics/bioclip", help="... under this repo id (default: %(default)s)")
    standin.set_defaults(func=run_make_standin)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)


def run_make_standin(args: argparse.Namespace) -> int:
    from ..models.standin import install_in_hub_cache, make_standin, standin_tol_taxa

    taxa = standin_tol_taxa(args.labels_csv) if args.labels_csv else None
    directory = make_standin(args.output, arch=args.arch, seed=args.seed, taxa=taxa,
                             random_bank_size=args.random_bank, weights_format=args.weights_format)
    print(f"wrote {directory}")
    if args.hub_cache:
        commit = install_in_hub_cache(directory, args.repo, args.hub_cache)
        print(f"installed as {args.repo}@{commit} in {args.hub_cache}")
    return 0
