"""`taxoclip predict`, `taxoclip embed`, `taxoclip taxa`."""

from __future__ import annotations

import argparse
import sys

from .common import add_device_argument, add_model_argument

RANK_CHOICES = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


def _add_image_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="PATH",
                        help="image files, folders (recursive), globs ('photos/**/*.jpg') or list files (.txt, .csv)")
    add_model_argument(parser)
    add_device_argument(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decode/preprocess worker processes (default: one per spare core, at most 8)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                        help="model weights precision (default: fp32; scores are always computed in fp32)")
    parser.add_argument("--preprocess", choices=("model", "squash"), default="model",
                        help="model: the checkpoint's own resize + centre crop (default); squash: pybioclip's "
                             "resize of the whole image to a square")
    parser.add_argument("--squash", dest="preprocess", action="store_const", const="squash",
                        help="same as --preprocess squash")
    parser.add_argument("--compile", action="store_true", help="torch.compile the image tower (slow start)")
    parser.add_argument("--output", "-o", help="output file (.csv, .jsonl, .parquet); default: standard output")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted --output file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary on stderr")


def register(subparsers) -> None:
    predict = subparsers.add_parser(
        "predict", help="name the organisms in photos (tree of life or custom labels)",
        description="Top-k names for each image: over the model's tree-of-life bank at any rank (default), "
                    "or over custom labels. Rows stream to the output; --resume continues a killed run.")
    _add_image_arguments(predict)
    predict.add_argument("--rank", choices=RANK_CHOICES, default="species",
                         help="rank to predict at; species probabilities are summed into it (default: species)")
    predict.add_argument("--k", type=int, default=5, help="names per image (default: %(default)s)")
    predict.add_argument("--min-score", type=float, default=0.0, help="drop names scoring below this")
    predict.add_argument("--taxa", action="append", default=[], metavar="FILTER",
                         help="restrict the bank: RANK=NAME[,NAME...] (e.g. class=Aves, family=Corvidae,Paridae; "
                              "join ranks with ';') or a CSV with rank columns; repeat to intersect. "
                              "Probabilities are a softmax over the restricted bank")
    predict.add_argument("--bank", default="auto",
                         help="auto (the model's tree-of-life files), inat (build from the iNaturalist species; "
                              "use with --taxa), a taxa CSV to build from, or a bank directory")
    predict.add_argument("--labels", help='custom labels instead of the tree of life: "a,b,c"')
    predict.add_argument("--labels-file", help="custom labels, one per line (or the first column of a CSV)")
    predict.add_argument("--bins", help="CSV label,bin (with a header): labels' probabilities summed per bin")
    predict.add_argument("--templates", default="openai", choices=("openai", "bioclip"),
                         help="prompt templates for built banks and custom labels (default: openai, 80)")
    predict.add_argument("--abstain", type=float, metavar="THRESHOLD",
                         help="also report the deepest rank whose best summed probability is at least this")
    predict.add_argument("--wide", action="store_true",
                         help="one row per image with the top-1 name and score at every rank down to --rank")
    predict.add_argument("--format", choices=("csv", "jsonl", "parquet", "table"),
                         help="default: from --output's extension; a table on a terminal, else CSV")
    predict.set_defaults(func=run_predict)

    embed = subparsers.add_parser("embed", help="write unit image embeddings (Parquet)",
                                  description="One row per image: path, model, normalised embedding, error.")
    _add_image_arguments(embed)
    embed.add_argument("--format", choices=("parquet", "jsonl"), help="default: from --output's extension, else Parquet")
    embed.set_defaults(func=run_embed)

    taxa = subparsers.add_parser("taxa", help="list a model's label bank as CSV")
    add_model_argument(taxa)
    taxa.add_argument("--bank", default="auto", help="auto, inat, a taxa CSV, or a bank directory (as for predict)")
    taxa.add_argument("--taxa", action="append", default=[], metavar="FILTER", help="restrict as for predict")
    taxa.add_argument("--output", "-o", help="CSV file (default: standard output)")
    taxa.set_defaults(func=run_taxa)


def _labels_and_bins(args: argparse.Namespace) -> tuple[list[str] | None, dict[str, str] | None]:
    from ..predict.banks import parse_labels, read_bins, read_labels_file

    labels: list[str] | None = None
    if args.labels or args.labels_file:
        labels = (parse_labels(args.labels) if args.labels else []) + \
                 (read_labels_file(args.labels_file) if args.labels_file else [])
    bins = read_bins(args.bins) if args.bins else None
    return labels, bins


def _predictor(args: argparse.Namespace, **extra):
    from ..predict import Predictor

    return Predictor(args.model, device=args.device, precision=args.precision, batch_size=args.batch_size,
                     workers=args.workers, preprocess=args.preprocess, compile=args.compile,
                     progress=not args.quiet, **extra)


def _run(args: argparse.Namespace, predictor, columns, fmt, rows_of) -> int:
    from ..predict import expand_inputs, open_writer

    items = expand_inputs(args.inputs)
    if not items:
        from ..errors import TaxoclipError

        raise TaxoclipError("no images found in the given paths")
    writer = open_writer(args.output, fmt, columns, args.resume, args.overwrite,
                         expect={"model": predictor.model_label})
    images = errors = 0
    with writer:
        for rows in rows_of(items, writer.done):
            writer.write(rows)
            seen = {row["path"]: row.get("error") for row in rows}
            images += len(seen)
            errors += sum(1 for error in seen.values() if error)
    if not args.quiet:
        skipped = len(writer.done)
        where = f" -> {args.output}" if args.output else ""
        resumed = f", {skipped} already done" if skipped else ""
        print(f"{images} images ({errors} failed{resumed}){where}; model {predictor.model_label}", file=sys.stderr)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ..errors import TaxoclipError
    from ..predict.outputs import infer_format

    labels, bins = _labels_and_bins(args)
    if (labels is not None or bins is not None) and args.rank != "species":
        raise TaxoclipError("--rank applies to the tree of life; custom labels have no ranks (use --bins to group them)")
    predictor = _predictor(args, labels=labels, bins=bins, bank=args.bank, taxa=args.taxa, templates=args.templates)
    rank = args.rank if predictor.bank.taxonomic else "species"
    fmt = infer_format(args.output, args.format)
    columns = predictor.columns(rank, args.wide, args.abstain)

    def rows_of(items, done):
        return predictor.iter_predict(items, rank=rank, k=args.k, min_score=args.min_score, wide=args.wide,
                                      abstain=args.abstain, skip=done)

    return _run(args, predictor, columns, fmt, rows_of)


def run_embed(args: argparse.Namespace) -> int:
    from ..errors import TaxoclipError
    from ..predict.outputs import infer_format

    if not args.output or args.output == "-":
        raise TaxoclipError("embed needs --output FILE (.parquet or .jsonl)")
    fmt = infer_format(args.output, args.format, default_file="parquet")
    if fmt not in ("parquet", "jsonl"):
        raise TaxoclipError(f"embed writes Parquet or JSONL, not {fmt}")
    predictor = _predictor(args)
    return _run(args, predictor, predictor.embed_columns(), fmt,
                lambda items, done: predictor.iter_embed(items, skip=done))


def run_taxa(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..models import load_model, resolve_model
    from ..predict.banks import open_bank

    builds = args.bank == "inat" or Path(args.bank).is_file()  # built banks encode text: load the model
    model = load_model(args.model) if builds else resolve_model(args.model)
    bank = open_bank(model, args.bank, taxa_filters=args.taxa, progress=True)
    table = bank.taxa_table()
    out = args.output if args.output and args.output != "-" else sys.stdout
    table.to_csv(out, index=False)
    print(f"{len(table)} classes in {bank.label}", file=sys.stderr)
    return 0
