"""`--taxa` filters: restrict a taxonomic bank to some taxa, at any rank or mix of ranks.

A filter is `RANK=NAME[,NAME...]` (several ranks joined by `;`: `class=Aves;order=Passeriformes`)
or a CSV file whose columns are rank names (`kingdom` ... `species`, `species_epithet`). In a
CSV each row names one taxon by all its non-empty columns; a class passes if it matches any
row. Several filters must all pass. `species` takes a binomial (`Pica hudsonia`) or, with a
`genus` value beside it, an epithet. Names are matched case-insensitively; a name that matches
nothing is an error, so a typo never silently empties the bank.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import TaxoclipError
from ..taxonomy.taxon import RANKS, rank_index
from .ranks import EPITHET_COLUMN, binomials

FILTER_COLUMNS: tuple[str, ...] = (*RANKS, EPITHET_COLUMN)


def _canonical_column(name: str) -> str | None:
    key = str(name).strip().lower()
    if key in (EPITHET_COLUMN, "epithet", "specific_epithet", "specificepithet"):
        return EPITHET_COLUMN
    try:
        return RANKS[rank_index(key)]
    except ValueError:
        return None


def parse_filter(spec: str) -> pd.DataFrame:
    """One `--taxa` value as a table of rows to match (columns = rank names)."""
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return _read_filter_csv(path)
    if "=" not in spec:
        raise TaxoclipError(f"--taxa {spec!r}: expected RANK=NAME[,NAME...] (e.g. class=Aves) or a CSV file")
    parts = {}
    for clause in spec.split(";"):
        if not clause.strip():
            continue
        rank, _, values = clause.partition("=")
        column = _canonical_column(rank)
        names = [v.strip() for v in values.split(",") if v.strip()]
        if column is None or not names:
            raise TaxoclipError(f"--taxa {spec!r}: expected RANK=NAME[,NAME...] with a rank among {', '.join(RANKS)}")
        if column in parts:
            raise TaxoclipError(f"--taxa {spec!r}: {column} given twice; list its names after one '='")
        parts[column] = names
    if not parts:
        raise TaxoclipError(f"--taxa {spec!r}: nothing to filter on")
    # rank=a,b;other=c means (rank in {a,b}) and (other == c): the cross product of the lists.
    table = pd.DataFrame({"_": [0]})
    for column, names in parts.items():
        table = table.merge(pd.DataFrame({"_": 0, column: names}), on="_")
    return table.drop(columns="_")


def _read_filter_csv(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, sep="\t" if path.suffix.lower() == ".tsv" else ",").fillna("")
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"--taxa {path}: cannot read: {err}") from None
    rename = {c: _canonical_column(c) for c in table.columns if _canonical_column(c)}
    if not rename:
        raise TaxoclipError(f"--taxa {path}: no rank columns (expected some of {', '.join(FILTER_COLUMNS)})")
    table = table[list(rename)].rename(columns=rename)
    table = table.loc[:, ~table.columns.duplicated()]
    table = table[(table != "").any(axis=1)]
    if table.empty:
        raise TaxoclipError(f"--taxa {path}: no names in its rank columns")
    return table.reset_index(drop=True)


def _match_keys(classes: pd.DataFrame) -> pd.DataFrame:
    keys = pd.DataFrame(index=classes.index)
    for column in RANKS[:-1]:
        keys[column] = classes[column].astype(str).str.lower()
    keys[EPITHET_COLUMN] = classes[EPITHET_COLUMN].astype(str).str.lower()
    keys["species"] = binomials(classes).str.lower()
    return keys


def _normalise_rows(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.astype(str).apply(lambda col: col.str.strip().str.lower().str.split().str.join(" "))
    if "species" in rows:  # an epithet in the species column: match it as an epithet
        epithet_only = (rows["species"] != "") & ~rows["species"].str.contains(" ")
        if epithet_only.any():
            if EPITHET_COLUMN not in rows:
                rows[EPITHET_COLUMN] = ""
            rows.loc[epithet_only, EPITHET_COLUMN] = rows.loc[epithet_only, "species"]
            rows.loc[epithet_only, "species"] = ""
    return rows


def filter_mask(classes: pd.DataFrame, rows: pd.DataFrame, description: str = "--taxa") -> np.ndarray:
    """Boolean mask of the classes matching any row of `rows`; unknown names are an error."""
    keys = _match_keys(classes)
    keys["_class"] = np.arange(len(classes))
    given = rows.reset_index(drop=True).astype(str)
    rows = _normalise_rows(given)
    rows["_row"] = np.arange(len(rows))
    mask = np.zeros(len(classes), dtype=bool)
    matched_rows = np.zeros(len(rows), dtype=bool)
    columns = [c for c in rows.columns if not c.startswith("_")]
    pattern = rows[columns] != ""
    for used, group in rows.groupby(pattern.apply(tuple, axis=1), sort=False):
        on = [c for c, present in zip(columns, used) if present]
        hits = group[["_row", *on]].merge(keys[["_class", *on]], on=on, how="inner")
        mask[hits["_class"].to_numpy()] = True
        matched_rows[hits["_row"].to_numpy()] = True
    if not matched_rows.all():
        missing = given.loc[~matched_rows]
        shown = ["/".join(v.strip() for v in row if v.strip()) for row in missing.itertuples(index=False)][:5]
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise TaxoclipError(f"{description}: not in this bank: {', '.join(shown)}{more} (names are matched "
                            f"case-insensitively; `taxoclip taxa` lists the bank)")
    return mask


def combined_mask(classes: pd.DataFrame, specs: Sequence[str] | Iterable[str]) -> np.ndarray:
    """Classes passing every filter in `specs` (each a RANK=NAMES string or a CSV path)."""
    mask = np.ones(len(classes), dtype=bool)
    for spec in specs:
        mask &= filter_mask(classes, parse_filter(spec), f"--taxa {spec}")
    if not mask.any():
        raise TaxoclipError(f"--taxa {' '.join(specs)}: no taxon passes all these filters together")
    return mask


def describe_filters(specs: Sequence[str]) -> str:
    """A short, stable description of filters for bank labels (CSV files by name)."""
    return ";".join(Path(s).name if Path(os.path.expanduser(s)).is_file() else s for s in specs)
