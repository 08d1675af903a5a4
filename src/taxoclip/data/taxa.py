"""Names of records to lineages: the config's hand map, then the offline resolver, in one batch.

Each distinct (name, rank hints) pair is resolved once with `taxonomy.resolve.resolve_names`;
rank columns of a source are passed as hints so homonyms pick the right kingdom. Common names
come, in order, from the hand map, the source's own common-name column, then the
`taxonomy.common_names` tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..errors import TaxoclipError
from ..taxonomy.names import binomial_key, normalise_whitespace
from ..taxonomy.resolve import read_common_names, read_synonyms, resolve_names
from ..taxonomy.taxon import HIGHER_RANKS, RANKS
from .config import TaxonomyConfig
from .sources import HINT_COLUMNS, _names_from_ranks, read_table

TAXON_COLUMNS: tuple[str, ...] = (*RANKS, "name_status", "name_note")
"""What `resolve_records` adds per record (`species` holds the binomial, as in the catalog)."""
REPORT_COLUMNS: tuple[str, ...] = ("raw_name", "count", "status", "accepted", "resolved", "sources", "note")


def name_key(raw: str) -> str:
    """How names are matched in hand maps and exclusion lists: the normalised binomial, or the
    lower-cased tidy text when the name is not a Latin one."""
    return binomial_key(raw) or normalise_whitespace(raw).lower()


def _manual_lineage(target: dict[str, str]) -> dict[str, str]:
    lineage = {rank: target.get(rank, "") for rank in RANKS}
    species = lineage["species"]
    if species and " " not in species.strip() and lineage["genus"]:
        lineage["species"] = f"{lineage['genus']} {species.strip()}"
    return lineage


def resolve_records(records: pd.DataFrame, config: TaxonomyConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lineages for every record (TAXON_COLUMNS + `common_name`, aligned to `records`) and a
    report with one row per distinct source name (REPORT_COLUMNS), most frequent first."""
    hand = {name_key(k): v for k, v in config.map.items()}
    synonyms = read_synonyms(config.synonyms) if config.synonyms else None
    common_names = read_common_names(config.common_names) if config.common_names else None

    keys = records["raw_name"].map(name_key)
    mapped = keys.map(lambda k: hand.get(k))
    query = records["raw_name"].where(mapped.map(lambda v: not isinstance(v, str)), mapped)
    lineage_given = mapped.map(lambda v: isinstance(v, dict))
    hints = records[list(HINT_COLUMNS)].rename(columns=dict(zip(HINT_COLUMNS, HIGHER_RANKS)))

    distinct = pd.concat([query.rename("query"), hints], axis=1)[~lineage_given.to_numpy()].drop_duplicates()
    resolved = resolve_names(distinct["query"].tolist(), hints=distinct[list(HIGHER_RANKS)],
                             synonyms=synonyms, common_names=common_names)
    resolved.index = distinct.index
    lookup = pd.concat([distinct, resolved.drop(columns=["query"]).add_prefix("r_")], axis=1)
    merged = pd.concat([query.rename("query"), hints], axis=1).merge(
        lookup, on=["query", *HIGHER_RANKS], how="left")
    merged.index = records.index

    out = pd.DataFrame(index=records.index)
    for rank in RANKS:
        out[rank] = merged[f"r_{rank}"].fillna("").astype(str)
    out["name_status"] = merged["r_status"].fillna("unresolved").astype(str)
    out["name_note"] = merged["r_note"].fillna("").astype(str)
    resolved_common = merged["r_common_name"].fillna("").astype(str)
    for index in records.index[lineage_given.to_numpy()]:
        lineage = _manual_lineage(mapped[index])
        for rank in RANKS:
            out.at[index, rank] = lineage[rank]
        out.at[index, "name_status"] = "manual"
        out.at[index, "name_note"] = "lineage from taxonomy.map"
        resolved_common.at[index] = mapped[index].get("common_name", "")
    text_mapped = mapped.map(lambda v: isinstance(v, str)).to_numpy()
    out.loc[text_mapped, "name_note"] = ("mapped by hand to " + query[text_mapped] + "; " +
                                         out.loc[text_mapped, "name_note"]).str.rstrip("; ")
    source_common = records["common_name"].astype(str)
    out["common_name"] = resolved_common.where(lineage_given & (resolved_common != ""),
                                               source_common.where(source_common != "", resolved_common))
    return out, names_report(records, out, config.accept)


def names_report(records: pd.DataFrame, taxa: pd.DataFrame, accept: Iterable[str]) -> pd.DataFrame:
    """One row per distinct source name: how many images, how it resolved, and whether it is used."""
    accept = set(accept)
    frame = pd.DataFrame({
        "raw_name": records["raw_name"], "source": records["source"], "status": taxa["name_status"],
        "resolved": _names_from_ranks(taxa[list(RANKS)]), "note": taxa["name_note"],
    })
    grouped = frame.groupby(["raw_name", "status", "resolved", "note"], sort=False, dropna=False)
    report = grouped.agg(count=("source", "size"), sources=("source", lambda s: ";".join(sorted(set(s)))))
    report = report.reset_index()
    report["accepted"] = report["status"].isin(accept)
    report = report.sort_values(["accepted", "count", "raw_name"], ascending=[True, False, True], kind="stable")
    return report[list(REPORT_COLUMNS)].reset_index(drop=True)


# -- species exclusion ----------------------------------------------------------------------------

def read_name_list(path: Path) -> list[str]:
    """Names from a text file (one per line, `#` comments) or a table with a name or rank columns."""
    if path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"):
        table = read_table(path)
        lowered = {c.lower(): c for c in table.columns}
        for column in ("scientific_name", "species_label", "binomial", "taxon", "name", "label"):
            if column in lowered:
                return [n for n in table[lowered[column]].tolist() if n.strip()]
        ranks = {rank: table[lowered[rank]] for rank in RANKS if rank in lowered}
        if ranks:
            return [n for n in _names_from_ranks(pd.DataFrame(ranks)).tolist() if n.strip()]
        raise TaxoclipError(f"exclusion list {path} has no name column (scientific_name, name, ...) or rank columns")
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise TaxoclipError(f"cannot read exclusion list {path}: {err.strerror or err}") from None
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def exclusion_keys(names: Iterable[str], synonyms: Iterable[Path] = ()) -> set[str]:
    """Match keys of excluded taxa: each name's normalised form and that of its accepted name."""
    names = [n for n in names if n and n.strip()]
    keys = {name_key(n) for n in names}
    if names:
        resolved = resolve_names(names, synonyms=read_synonyms(synonyms) if synonyms else None)
        for status, species in zip(resolved["status"], resolved["species"]):
            if status in ("species", "infraspecific", "synonym") and species:
                keys.add(species.lower())
    keys.discard("")
    return keys


def excluded_by_taxon(raw_names: pd.Series, taxa: pd.DataFrame, keys: set[str]) -> pd.Series:
    """Records whose source name, resolved binomial or any resolved higher rank is in `keys`."""
    if not keys:
        return pd.Series(False, index=raw_names.index)
    hit = raw_names.map(name_key).isin(keys)
    for rank in RANKS:
        hit |= taxa[rank].str.lower().isin(keys)
    return hit
