"""Evaluation tasks: a metadata table of images with labels, and the class texts of each text type.

A task is a CSV or Parquet table with a path column (`filepath`) and either a `class` label
column or rank columns (`kingdom` ... `species`), plus the folder the paths are relative to.
Both layouts of BioCLIP's own evaluation metadata work: `filepath,class` (Meta-Album "Mini"
sets) and `filepath,class` + `kingdom,phylum,cls,order,family,genus,species,common_name`
(`cls` is the taxonomic class there, because `class` is the label). With rank columns and no
label column the task classifies at `rank` (default species); the class is then the whole
lineage down to that rank, so homonyms in different kingdoms stay apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import TaxoclipError
from ..taxonomy.names import clean_label
from ..taxonomy.taxon import RANKS, Taxon, rank_index
from ..taxonomy.text import render, text_type_key

ASIS = "asis"
"""The task's own label strings, cleaned with `taxonomy.names.clean_label`."""

EVAL_TEXT_TYPES: tuple[str, ...] = (ASIS, "sci", "com", "taxon", "sci_com", "taxon_com")
"""Text types of BioCLIP's zero-shot evaluation (BIOCLIP.md section 5)."""

COMMON_COLUMNS: tuple[str, ...] = ("common_name", "common")
"""Columns read as the English common name, first found wins."""


def eval_text_type(name: str) -> str:
    """`asis` or the canonical key of a `taxonomy.text` type; one-line error otherwise."""
    if name.lower() == ASIS:
        return ASIS
    try:
        return text_type_key(name)
    except ValueError as err:
        raise TaxoclipError(f"{err} (or {ASIS})") from None


@dataclass
class TaskSpec:
    """Where a task's table and images are and how to read them (one entry of a suite YAML)."""

    name: str
    metadata: str
    images: str | None = None  # folder the paths are relative to (default: the table's folder)
    path_column: str = "filepath"
    label_column: str | None = None  # default `class` when the table has one and no `rank` is set
    rank: str | None = None  # classify at this rank from the rank columns
    text: str = ASIS  # default zero-shot text type
    filter: dict[str, list[str]] = field(default_factory=dict)  # keep rows whose column is in the list
    min_images: int = 1  # drop classes with fewer images
    common_names: str | None = None  # CSV scientific_name,common_name for resolved class names
    description: str = ""

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], base: str | os.PathLike | None = None) -> TaskSpec:
        """From a mapping (YAML); relative paths are taken relative to `base`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise TaxoclipError(f"task {entry.get('name', '?')!r}: unknown keys {', '.join(unknown)} "
                                f"(expected {', '.join(sorted(known))})")
        if "name" not in entry or "metadata" not in entry:
            raise TaxoclipError(f"a task needs `name` and `metadata`: {dict(entry)}")
        values = dict(entry)
        values["filter"] = {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])]
                            for k, vs in (values.get("filter") or {}).items()}
        for key in ("metadata", "images", "common_names"):
            if values.get(key) is not None:
                values[key] = str(_under(base, values[key]))
        spec = cls(**values)
        spec.text = eval_text_type(spec.text)
        if spec.rank is not None:
            try:
                spec.rank = RANKS[rank_index(spec.rank)]
            except ValueError as err:
                raise TaxoclipError(f"task {spec.name!r}: {err}") from None
        return spec


def _under(base: str | os.PathLike | None, path: str | os.PathLike) -> Path:
    path = Path(os.path.expanduser(str(path)))
    return Path(os.path.abspath(path if path.is_absolute() or base is None else Path(base) / path))


@dataclass
class Task:
    """A loaded task: one row per image, class indices, and what is known of each class's taxon."""

    spec: TaskSpec
    table: pd.DataFrame  # columns: filepath (as in the metadata), path (absolute), label (class index)
    class_names: list[str]  # unique display names, in class-index order
    class_labels: list[str]  # the raw label strings (the source of `asis`)
    class_taxa: list[Taxon | None]  # lineage per class where known
    dropped: int = 0  # rows left out (filter, missing label, min_images)
    resolution: pd.DataFrame | None = None  # `resolve_names` output when class names were resolved

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()

    @property
    def paths(self) -> list[str]:
        return self.table["path"].tolist()

    @property
    def filepaths(self) -> list[str]:
        return self.table["filepath"].tolist()

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def known_ranks(self) -> list[str]:
        """Ranks at which at least one class has a value (per-rank metrics are possible there)."""
        return [rank for rank in RANKS if any(t is not None and t.get(rank) for t in self.class_taxa)]

    @property
    def unresolved(self) -> list[str]:
        """Class names without a lineage."""
        return [name for name, taxon in zip(self.class_names, self.class_taxa) if taxon is None or taxon.empty]


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV, TSV or Parquet metadata table as strings ("" for missing)."""
    path = Path(path)
    if not path.is_file():
        raise TaxoclipError(f"task metadata not found: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
            return table.astype(str).where(table.notna(), "")
        sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        return pd.read_csv(path, dtype=str, sep=sep, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"cannot read task metadata {path}: {err}") from None


def rank_columns(columns: list[str], label_column: str | None) -> dict[str, str]:
    """Rank -> column of the table; `cls` is the taxonomic class when present (BioCLIP's layout)."""
    out = {}
    for rank in RANKS:
        if rank == "class":
            column = "cls" if "cls" in columns else ("class" if "class" in columns and label_column != "class" else None)
        else:
            column = rank if rank in columns else None
        if column and column != label_column:
            out[rank] = column
    return out


def _choose_label(spec: TaskSpec, columns: list[str]) -> tuple[str | None, str | None]:
    """(label column, rank) for a table: explicit settings first, then the table's shape."""
    if spec.label_column and spec.rank:
        raise TaxoclipError(f"task {spec.name!r}: give either label_column or rank, not both")
    if spec.label_column:
        if spec.label_column not in columns:
            raise TaxoclipError(f"task {spec.name!r}: no column {spec.label_column!r} in {spec.metadata} "
                                f"(columns: {', '.join(columns)})")
        return spec.label_column, None
    if spec.rank:
        return None, spec.rank
    has_lineage = {"genus", "species"} <= set(columns) and "kingdom" in columns
    if "class" in columns and ("cls" in columns or not has_lineage):
        return "class", None
    if has_lineage:
        return None, "species"
    raise TaxoclipError(f"task {spec.name!r}: {spec.metadata} has neither a `class` column nor rank columns "
                        f"(columns: {', '.join(columns)}); set label_column or rank")


def _row_taxa(table: pd.DataFrame, ranks: dict[str, str], common: str | None) -> list[Taxon]:
    records = table[list(ranks.values())].to_dict("records") if ranks else [{}] * len(table)
    commons = table[common].tolist() if common else [""] * len(table)
    return [Taxon.from_ranks({rank: row[col] for rank, col in ranks.items()}, common=c)
            for row, c in zip(records, commons)]


def _unique_names(names: list[str], fallbacks: list[str]) -> list[str]:
    counts = pd.Series(names).value_counts()
    return [fb if counts[n] > 1 else n for n, fb in zip(names, fallbacks)]


def load_task(spec: TaskSpec) -> Task:
    """Read a task's table, apply its filter, and index its classes (sorted by name)."""
    table = read_table(spec.metadata)
    columns = list(table.columns)
    if spec.path_column not in columns:
        raise TaxoclipError(f"task {spec.name!r}: no path column {spec.path_column!r} in {spec.metadata} "
                            f"(columns: {', '.join(columns)}); set path_column")
    total = len(table)
    for column, allowed in spec.filter.items():
        if column not in columns:
            raise TaxoclipError(f"task {spec.name!r}: filter column {column!r} is not in {spec.metadata}")
        table = table[table[column].isin(allowed)]
    label_column, rank = _choose_label(spec, columns)
    ranks = rank_columns(columns, label_column)
    common = next((c for c in COMMON_COLUMNS if c in columns), None)
    if rank and rank not in ranks:
        raise TaxoclipError(f"task {spec.name!r}: rank {rank!r} needs a {rank} column in {spec.metadata}")
    row_taxa = _row_taxa(table, ranks, common)

    if rank:
        keys = [" ".join(t.prefix(rank)).strip() if t.get(rank) else "" for t in row_taxa]
        raw = [t.get(rank) for t in row_taxa]
    else:
        keys = [str(v).strip() for v in table[label_column]]
        raw = keys
    table = table.assign(_key=keys, _raw=raw, _taxon=row_taxa)
    table = table[table["_key"] != ""]
    if spec.min_images > 1:
        sizes = table.groupby("_key")["_key"].transform("size")
        table = table[sizes >= spec.min_images]
    if table.empty:
        raise TaxoclipError(f"task {spec.name!r}: no labelled images left in {spec.metadata}")

    firsts = table.drop_duplicates("_key")
    raw_labels = firsts["_raw"].tolist()
    if rank:
        index = rank_index(rank)
        taxa = [t.truncated(rank) if index < 6 else t for t in firsts["_taxon"]]
        names = _unique_names([clean_label(r) for r in raw_labels], firsts["_key"].tolist())
    else:
        taxa = [t if not t.empty else None for t in firsts["_taxon"]]
        names = _unique_names([clean_label(r) for r in raw_labels], raw_labels)
    order = sorted(range(len(names)), key=lambda i: (names[i], firsts["_key"].iloc[i]))
    key_to_label = {firsts["_key"].iloc[i]: new for new, i in enumerate(order)}

    root = Path(spec.images) if spec.images else Path(spec.metadata).parent
    filepaths = table[spec.path_column].astype(str).tolist()
    out = pd.DataFrame({
        "filepath": filepaths,
        "path": [p if os.path.isabs(p) else str(root / p) for p in filepaths],
        "label": table["_key"].map(key_to_label).to_numpy(dtype=np.int64),
    })
    return Task(spec=spec, table=out.reset_index(drop=True),
                class_names=[names[i] for i in order], class_labels=[raw_labels[i] for i in order],
                class_taxa=[taxa[i] for i in order], dropped=total - len(out))


def resolve_task_taxa(task: Task) -> list[str]:
    """Resolve class names without a lineage with the offline taxonomy; returns those still unresolved."""
    missing = [i for i, taxon in enumerate(task.class_taxa) if taxon is None or taxon.empty]
    if not missing:
        return []
    from ..taxonomy.resolve import read_common_names, resolve_names, taxa_from_results

    commons = read_common_names([task.spec.common_names]) if task.spec.common_names else None
    results = resolve_names([task.class_labels[i] for i in missing], common_names=commons)
    for i, taxon in zip(missing, taxa_from_results(results)):
        task.class_taxa[i] = taxon if taxon is not None and not taxon.empty else None
    task.resolution = results.assign(class_name=[task.class_names[i] for i in missing])
    return task.unresolved


def rank_keys(taxa: list[Taxon | None], rank: str) -> np.ndarray:
    """Each taxon's lineage from kingdom down to `rank`, joined ("" where it has no value at `rank`).

    Comparing whole lineages keeps homonyms (a genus name used in two kingdoms) apart.
    """
    return np.array([" ".join(t.prefix(rank)) if t is not None and t.get(rank) else "" for t in taxa],
                    dtype=object)


@dataclass
class LabelTexts:
    """The class texts of one text type, and the classes that fell back to their own label."""

    text_type: str
    texts: list[str]
    unresolved: list[str] = field(default_factory=list)


def label_texts(task: Task, text_type: str) -> LabelTexts:
    """Class texts for `asis` or a taxonomic text type.

    Classes without a lineage are resolved offline first (`taxonomy.resolve`); any that stay
    unresolved use their cleaned label instead and are listed in `unresolved`.
    """
    text_type = eval_text_type(text_type)
    asis = [clean_label(label) for label in task.class_labels]
    if text_type == ASIS:
        return LabelTexts(ASIS, asis)
    unresolved = resolve_task_taxa(task)
    texts = []
    for own, name, taxon in zip(asis, task.class_names, task.class_taxa):
        text = render(taxon, text_type) if taxon is not None else ""
        texts.append(text or name or own)
    return LabelTexts(text_type, texts, unresolved)
