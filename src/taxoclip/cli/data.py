"""`taxoclip data build|check|stats`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="build TreeOfLife-style webdataset shards from photo collections")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    build = commands.add_parser(
        "build", help="build (or resume) a dataset from a YAML config",
        description="Build OUT/<split>/shard-*.tar, sizes.json, catalog.{csv,parquet} and reports/ from the "
                    "sources a YAML config names (docs/data.md). Rerun the same command to resume.")
    build.add_argument("config", help="the YAML config (see configs/data/)")
    build.add_argument("--workers", type=int, default=None, help="processes (default: config, else all cores)")
    build.add_argument("--force", action="store_true", help="delete an earlier build in the output folder first")
    build.add_argument("--quiet", action="store_true", help="no progress output")
    build.add_argument("--stage", choices=("all", "plan", "write"), default="all",
                       help="all (default); plan: sources to plan only; write: this machine's share of the "
                            "shards of a planned build (with --machines/--machine-index, OUT on shared storage)")
    build.add_argument("--machines", type=int, default=1, help="machines sharing the write stage (default: 1)")
    build.add_argument("--machine-index", type=int, default=0, help="this machine's number, 0-based (default: 0)")
    build.set_defaults(func=run_build)

    check = commands.add_parser("check", help="find corrupt, truncated or incomplete shards in a built dataset")
    check.add_argument("directory", help="the dataset folder (holding train/, val/, ...)")
    check.add_argument("--decode", action="store_true", help="fully decode every image (slower)")
    check.add_argument("--workers", type=int, default=1, help="processes (default: %(default)s)")
    check.set_defaults(func=run_check)

    stats = commands.add_parser("stats", help="summarise a built dataset (splits, taxa, coverage, removals)")
    stats.add_argument("directory", help="the dataset folder")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(func=run_stats)


def run_build(args: argparse.Namespace) -> int:
    from ..data.build import build
    from ..errors import TaxoclipError

    if args.workers is not None and args.workers < 1:
        raise TaxoclipError("--workers must be at least 1")
    result = build(args.config, workers=args.workers, force=args.force, progress=not args.quiet, stage=args.stage,
                   machines=args.machines, machine_index=args.machine_index)
    print(result.output)
    return 0


def run_check(args: argparse.Namespace) -> int:
    import sys

    from ..data.check import check_dataset

    report = check_dataset(args.directory, decode=args.decode, workers=max(1, args.workers))
    for problem in report.problems:
        print(problem)
    summary = ", ".join(f"{split} {info['samples']} samples in {info['shards']} shards"
                        for split, info in report.splits.items())
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"{args.directory}: {verdict} ({summary})", file=sys.stderr)
    return 0 if report.ok else 1


def run_stats(args: argparse.Namespace) -> int:
    from ..data.stats import dataset_stats, format_stats, stats_json

    stats = dataset_stats(args.directory)
    print(stats_json(stats) if args.json else format_stats(stats))
    return 0
