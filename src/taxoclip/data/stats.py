"""`taxoclip data stats`: what a built dataset holds, from its catalog, sizes.json and reports."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import TaxoclipError
from ..taxonomy.taxon import RANKS
from . import schema


def read_catalog(directory: str | os.PathLike) -> pd.DataFrame:
    """The catalog of a built dataset (Parquet if present, else CSV), every column as text."""
    directory = Path(directory)
    parquet, csv = directory / schema.CATALOG_PARQUET, directory / schema.CATALOG_CSV
    if parquet.is_file():
        return pd.read_parquet(parquet).astype(str)
    if csv.is_file():
        return pd.read_csv(csv, dtype=str, keep_default_na=False)
    raise TaxoclipError(f"{directory} has no {schema.CATALOG_PARQUET} or {schema.CATALOG_CSV}")


def dataset_stats(directory: str | os.PathLike, top: int = 10) -> dict[str, Any]:
    """Counts per split and source, taxa per rank, rank and common-name coverage, licenses,
    shard sizes, and removals by reason (when the build's reports are present)."""
    directory = Path(directory)
    catalog = read_catalog(directory)
    stats: dict[str, Any] = {"directory": str(directory), "splits": {}}
    for split in schema.SPLITS:
        rows = catalog[catalog["split"] == split]
        split_dir = directory / split
        if rows.empty and not split_dir.is_dir():
            continue
        shards = sorted(split_dir.glob(schema.SHARD_GLOB))
        size = sum(p.stat().st_size for p in shards)
        stats["splits"][split] = {
            "samples": len(rows), "shards": len(shards), "bytes": size,
            "mean_kb_per_sample": round(size / max(len(rows), 1) / 1024, 1),
            "sources": rows["source"].value_counts().to_dict(),
        }
    images = catalog[catalog["split"] != "train_small"].drop_duplicates("id")
    complete = (images[list(RANKS)] != "").all(axis=1)
    stats["images"] = len(images)
    stats["taxa_per_rank"] = {rank: int(_lineages(images, rank).nunique()) for rank in RANKS}
    stats["all_seven_ranks"] = round(float(complete.mean()) if len(images) else 0.0, 4)
    stats["with_common_name"] = round(float((images["common_name"] != "").mean()) if len(images) else 0.0, 4)
    stats["kingdoms"] = images["kingdom"].replace("", "(none)").value_counts().to_dict()
    stats["top_species"] = images.loc[images["species"] != "", "species"].value_counts().head(top).to_dict()
    stats["licenses"] = images["license"].replace("", "(none)").value_counts().head(top).to_dict()
    if "name_status" in images:
        stats["name_status"] = images["name_status"].value_counts().to_dict()
    removed = directory / schema.REPORTS_DIR / "removed.csv"
    if removed.is_file():
        stats["removed"] = pd.read_csv(removed, dtype=str)["reason"].value_counts().to_dict()
    return stats


def _lineages(images: pd.DataFrame, rank: str) -> pd.Series:
    """Distinct taxa at a rank are distinct lineage prefixes (homonyms in two kingdoms count twice)."""
    columns = list(RANKS[: RANKS.index(rank) + 1])
    named = images[images[rank] != ""]
    return named[columns].apply("/".join, axis=1) if len(named) else pd.Series(dtype=str)


def format_stats(stats: dict[str, Any]) -> str:
    """A short plain-text report."""
    lines = [f"dataset {stats['directory']}: {stats['images']} images"]
    for split, info in stats["splits"].items():
        sources = ", ".join(f"{k} {v}" for k, v in info["sources"].items())
        lines.append(f"  {split:<12} {info['samples']:>9} samples  {info['shards']:>5} shards  "
                     f"{info['bytes'] / 1e6:>9.1f} MB  {info['mean_kb_per_sample']:>6} KB/sample  ({sources})")
    lines.append("  taxa: " + ", ".join(f"{rank} {n}" for rank, n in stats["taxa_per_rank"].items()))
    lines.append(f"  all 7 ranks: {stats['all_seven_ranks']:.1%}   with a common name: {stats['with_common_name']:.1%}")
    for key, title in (("kingdoms", "kingdoms"), ("top_species", "most images"), ("licenses", "licenses"),
                       ("name_status", "name status"), ("removed", "removed")):
        if stats.get(key):
            lines.append(f"  {title}: " + ", ".join(f"{k} {v}" for k, v in stats[key].items()))
    return "\n".join(lines)


def stats_json(stats: dict[str, Any]) -> str:
    return json.dumps(stats, indent=1, default=int)
