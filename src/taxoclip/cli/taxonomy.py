"""`taxoclip taxonomy resolve NAMES... | --file names.txt`."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser("taxonomy", help="resolve names to full lineages offline (iNaturalist taxonomy)")
    sub = parser.add_subparsers(dest="taxonomy_command", metavar="ACTION")
    resolve = sub.add_parser("resolve", help="resolve binomials, genera or higher taxa to 7-rank lineages")
    resolve.add_argument("names", nargs="*", help="names, e.g. 'Pica hudsonia' 'Amanita muscaria (L.) Lam.'")
    resolve.add_argument("--file", help="a text file with one name per line, or a CSV (see --column)")
    resolve.add_argument("--column", default=None, help="name column of a CSV --file (default: first column)")
    resolve.add_argument("--hint", action="append", default=[], metavar="RANK=NAME",
                         help="a higher rank that all names share, to pick among homonyms (e.g. kingdom=Animalia)")
    resolve.add_argument("--synonyms", action="append", default=[], help="extra synonym CSV (columns name,accepted)")
    resolve.add_argument("--common-names", action="append", default=[],
                         help="CSV with scientific_name (or species) and common_name columns")
    resolve.add_argument("--format", choices=("table", "csv", "jsonl"), default=None,
                         help="output format (default: table on a terminal, csv otherwise)")
    resolve.add_argument("--output", "-o", help="write to this file instead of standard output")
    resolve.set_defaults(func=run_resolve)
    parser.set_defaults(func=lambda args: parser.print_help() or 0)


def _read_names(args: argparse.Namespace) -> tuple[list[str], object]:
    from pathlib import Path

    import pandas as pd

    from ..errors import TaxoclipError

    names = list(args.names)
    hints = None
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise TaxoclipError(f"--file {path}: no such file")
        if path.suffix.lower() in (".csv", ".tsv"):
            table = pd.read_csv(path, dtype=str, sep="\t" if path.suffix.lower() == ".tsv" else ",").fillna("")
            column = args.column or table.columns[0]
            if column not in table.columns:
                raise TaxoclipError(f"--column {column!r} is not in {path} (columns: {', '.join(table.columns)})")
            names += table[column].tolist()
            rank_columns = [c for c in ("kingdom", "phylum", "class", "order", "family") if c in table.columns]
            if rank_columns and not args.names:
                hints = table[rank_columns]
        else:
            names += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise TaxoclipError("no names given: pass names as arguments or --file names.txt")
    return names, hints


def run_resolve(args: argparse.Namespace) -> int:
    from ..errors import TaxoclipError
    from ..taxonomy.resolve import read_common_names, read_synonyms, resolve_names

    names, hints = _read_names(args)
    shared = {}
    for item in args.hint:
        rank, _, value = item.partition("=")
        if not value:
            raise TaxoclipError(f"--hint {item!r}: expected RANK=NAME, e.g. kingdom=Animalia")
        shared[rank.strip().lower()] = value.strip()
    if shared:
        hints = [shared] * len(names)
    results = resolve_names(names, hints=hints, synonyms=read_synonyms(args.synonyms) if args.synonyms else None,
                            common_names=read_common_names(args.common_names) if args.common_names else None)
    fmt = args.format or ("table" if sys.stdout.isatty() and not args.output else "csv")
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        if fmt == "csv":
            results.to_csv(out, index=False)
        elif fmt == "jsonl":
            results.to_json(out, orient="records", lines=True, force_ascii=False)
        else:
            out.write(results.drop(columns=["query"]).astype(object).fillna("").to_string(index=False) + "\n")
    finally:
        if args.output:
            out.close()
    counts = results["status"].value_counts()
    print(", ".join(f"{k}: {v}" for k, v in counts.items()), file=sys.stderr)
    return 0
