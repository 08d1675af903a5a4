"""Enumerate the images of every configured source into one table of records.

Three kinds of source:

- `folder`: one sub-folder per taxon, images anywhere below it. Folder names may be binomials
  (`Pica hudsonia`), `Genus_species`, or iNat21-style `00001_Animalia_..._Pica_hudsonia`.
- `manifest`: a CSV/TSV/Parquet table with a path or URL column and a name column and/or rank
  columns (kingdom ... species), plus optional common name, license, rights holder, source URL and
  id columns. Relative paths resolve against the manifest's folder (or `root`).
- `webdataset`: existing shards (a folder of `.tar`, one tar, or a glob). Names come from the
  TreeOfLife members (`taxonTag.txt`, `taxonomic_name.txt`, `scientific_name.txt`, `common_name.txt`)
  or from `txt`/`cls`/`json`; images are read back by byte offset, never re-extracted.

Records are listed in a deterministic order (sorted folders, manifest row order, tar order), so
the first of two duplicates is always the same one.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..errors import TaxoclipError
from ..taxonomy.taxon import HIGHER_RANKS, RANKS
from .config import IMAGE_EXTENSIONS, BuildConfig, SourceConfig

HINT_COLUMNS: tuple[str, ...] = tuple(f"hint_{rank}" for rank in HIGHER_RANKS)
RECORD_COLUMNS: tuple[str, ...] = (
    "id", "source", "source_id", "location", "offset", "length", "raw_name", *HINT_COLUMNS,
    "common_name", "license", "rights_holder", "source_url",
)
"""`location`: a local file, an http(s) URL, or a tar file (then `offset`/`length` of the member)."""

ID_NAMESPACE = uuid.UUID("7d0f3a52-8f0e-4c61-9d2a-1b4f3e5c6a70")
"""uuid5 namespace of sample ids: id = uuid5(NS, "<source>/<source_id>"), stable across builds."""

PATH_COLUMNS = ("path", "filepath", "file_path", "file", "filename", "image_path", "image", "img_path")
URL_COLUMNS = ("url", "image_url", "photo_url", "img_url", "media_url", "identifier")
NAME_COLUMNS = ("scientific_name", "species_label", "taxon_name", "taxon", "name", "label", "binomial")
COMMON_COLUMNS = ("common_name", "vernacular_name", "vernacularName")
LICENSE_COLUMNS = ("license", "licence", "license_url")
RIGHTS_COLUMNS = ("rights_holder", "rightsHolder", "rights", "creator", "author", "photographer")
SOURCE_URL_COLUMNS = ("source_url", "page_url", "references", "occurrence_url")
ID_COLUMNS = ("id", "image_id", "uuid", "source_id", "photo_id", "media_id")

IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")
_URL = re.compile(r"^https?://", re.IGNORECASE)


def sample_id(source: str, source_id: str) -> str:
    """The stable sample key: a uuid5 of source name and source id."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{source}/{source_id}"))


def is_url(location: str) -> bool:
    return bool(_URL.match(location))


def enumerate_sources(config: BuildConfig) -> pd.DataFrame:
    """All records of all sources, in config order; columns RECORD_COLUMNS."""
    tables = [enumerate_source(source) for source in config.sources]
    records = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(RECORD_COLUMNS))
    return records


def enumerate_source(source: SourceConfig) -> pd.DataFrame:
    """The records of one source (raises a one-line TaxoclipError when it cannot be read)."""
    readers = {"folder": _folder_records, "manifest": _manifest_records, "webdataset": _webdataset_records}
    table = readers[source.kind](source)
    if table.empty:
        raise TaxoclipError(f"source {source.name!r} ({source.kind} {source.path}) holds no images")
    return _finish(table, source)


def _finish(table: pd.DataFrame, source: SourceConfig) -> pd.DataFrame:
    """Fill defaults, make source ids unique and add ids."""
    table = table.copy()
    for column in RECORD_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    table["source"] = source.name
    table["offset"] = pd.to_numeric(table["offset"].replace("", -1)).fillna(-1).astype("int64")
    table["length"] = pd.to_numeric(table["length"].replace("", -1)).fillna(-1).astype("int64")
    text_columns = [c for c in RECORD_COLUMNS if c not in ("offset", "length")]
    table[text_columns] = table[text_columns].fillna("").astype(str)
    for rank, value in source.hints.items():
        column = f"hint_{rank}"
        table[column] = table[column].where(table[column] != "", value)
    for column in ("license", "rights_holder", "source_url"):
        default = getattr(source, column)
        if default:
            table[column] = table[column].where(table[column] != "", default)
    repeat = table.groupby("source_id").cumcount()
    table["source_id"] = table["source_id"].where(repeat == 0, table["source_id"] + "#" + repeat.astype(str))
    table["id"] = [sample_id(source.name, sid) for sid in table["source_id"]]
    return table[list(RECORD_COLUMNS)]


# -- folder trees ---------------------------------------------------------------------------------

def _image_files(folder: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                yield Path(dirpath) / name


def _folder_records(source: SourceConfig) -> pd.DataFrame:
    if not source.path.is_dir():
        raise TaxoclipError(f"source {source.name!r}: folder {source.path} does not exist")
    rows = []
    for taxon_dir in sorted(p for p in source.path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in _image_files(taxon_dir):
            rows.append({"source_id": path.relative_to(source.path).as_posix(), "location": str(path),
                         "raw_name": taxon_dir.name})
    return pd.DataFrame(rows)


# -- manifests ------------------------------------------------------------------------------------

def read_table(path: Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet table, every column as strings ("" for missing)."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
            return table.astype(object).where(table.notna(), "").astype(str)
        separator = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        return pd.read_csv(path, dtype=str, sep=separator, keep_default_na=False)
    except FileNotFoundError:
        raise TaxoclipError(f"manifest {path} does not exist") from None
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"cannot read manifest {path}: {err}") from None


def _pick(table: pd.DataFrame, given: str | None, candidates: tuple[str, ...], what: str, source: SourceConfig,
          ) -> str | None:
    if given is not None:
        if given not in table.columns:
            raise TaxoclipError(f"source {source.name!r}: {what} column {given!r} is not in {source.path.name} "
                                f"(columns: {', '.join(table.columns)})")
        return given
    lowered = {c.lower(): c for c in table.columns}
    return next((lowered[c.lower()] for c in candidates if c.lower() in lowered), None)


def _names_from_ranks(ranks: pd.DataFrame) -> pd.Series:
    """The deepest given rank as the name to resolve; species as a binomial."""
    genus = ranks["genus"] if "genus" in ranks else pd.Series("", index=ranks.index)
    name = pd.Series("", index=ranks.index, dtype=object)
    for rank in RANKS[:-1]:
        if rank in ranks:
            name = name.where(ranks[rank] == "", ranks[rank])
    if "species" in ranks:
        species = ranks["species"].str.strip()
        binomial = species.where(species.str.contains(" ") | (genus == ""), genus + " " + species)
        name = name.where(species == "", binomial)
    return name


def _manifest_records(source: SourceConfig) -> pd.DataFrame:
    table = read_table(source.path)
    path_col = _pick(table, source.path_column, () if source.url_column else PATH_COLUMNS, "path", source)
    url_col = _pick(table, source.url_column, () if path_col else URL_COLUMNS, "URL", source)
    if not path_col and not url_col:
        raise TaxoclipError(f"source {source.name!r}: {source.path.name} has no path or URL column (looked for "
                            f"{', '.join(PATH_COLUMNS + URL_COLUMNS)}); set path_column or url_column")
    name_col = _pick(table, source.name_column, NAME_COLUMNS, "name", source)
    if source.rank_columns is not None:
        rank_cols = {rank: _pick(table, column, (), rank, source) for rank, column in source.rank_columns.items()}
    else:
        lowered = {c.lower(): c for c in table.columns}
        rank_cols = {rank: lowered[rank] for rank in RANKS if rank in lowered}
    if not name_col and not rank_cols:
        raise TaxoclipError(f"source {source.name!r}: {source.path.name} has no name column (looked for "
                            f"{', '.join(NAME_COLUMNS)}) and no rank columns; set name_column or rank_columns")
    ranks = pd.DataFrame({rank: table[col].str.strip() for rank, col in rank_cols.items()}, index=table.index)
    out = pd.DataFrame(index=table.index)
    if name_col:
        names = table[name_col].str.strip()
        out["raw_name"] = names.where(names != "", _names_from_ranks(ranks)) if rank_cols else names
    else:
        out["raw_name"] = _names_from_ranks(ranks)
    for rank in HIGHER_RANKS:
        if rank in ranks:
            out[f"hint_{rank}"] = ranks[rank]
    locations = table[path_col or url_col].str.strip()
    if path_col:
        root = source.root or source.path.parent
        out["location"] = [str(p if os.path.isabs(p) or is_url(p) else root / p) if p else "" for p in locations]
    else:
        out["location"] = locations
    id_col = _pick(table, source.id_column, ID_COLUMNS, "id", source)
    out["source_id"] = table[id_col].str.strip() if id_col else locations
    for target, given, candidates in (
        ("common_name", source.common_name_column, COMMON_COLUMNS),
        ("license", source.license_column, LICENSE_COLUMNS),
        ("rights_holder", source.rights_holder_column, RIGHTS_COLUMNS),
        ("source_url", source.source_url_column, SOURCE_URL_COLUMNS),
    ):
        column = _pick(table, given, candidates, target.replace("_", " "), source)
        if column:
            out[target] = table[column].str.strip()
    if url_col and "source_url" not in out:
        out["source_url"] = locations
    return out


# -- existing webdataset shards -------------------------------------------------------------------

def shard_files(path: Path) -> list[Path]:
    """The `.tar` files of a webdataset source: a folder (recursively), one file, or a glob."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*.tar") if p.is_file())
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(str(path), recursive=True) if p.endswith(".tar"))


def _member_parts(name: str) -> tuple[str, str]:
    """webdataset's key/suffix split: key = path up to the first dot of the basename."""
    directory, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), suffix.lower()


def ranks_from_tagged(text: str) -> dict[str, str]:
    """Ranks from a `taxonTag` text (`a photo of kingdom Animalia ... species hudsonia.`)."""
    text = text.strip()
    if text.startswith("a photo of "):
        text = text[len("a photo of "):].rstrip(".")
    text = text.split(" with common name ")[0]
    tokens = text.split()
    ranks: dict[str, str] = {}
    current = None
    for token in tokens:
        if token in RANKS:
            current = token
            ranks[current] = ""
        elif current:
            ranks[current] = f"{ranks[current]} {token}".strip()
    return ranks


def _sample_record(key: str, texts: dict[str, str], name_member: str | None) -> dict[str, str]:
    """Name, hints and metadata of one webdataset sample from its text members."""
    record: dict[str, str] = {}
    meta: dict = {}
    if "json" in texts:
        try:
            meta = json.loads(texts["json"]) or {}
        except ValueError:
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
    ranks = ranks_from_tagged(texts["taxontag.txt"]) if "taxontag.txt" in texts else {}
    if not ranks:
        ranks = {rank: str(meta[rank]) for rank in RANKS if meta.get(rank)}
    if name_member:
        name = texts.get(name_member.lower(), "")
    elif ranks:
        genus = ranks.get("genus", "")
        species = ranks.get("species", "")
        name = (f"{genus} {species}" if genus and species and " " not in species else species) or next(
            (ranks[r] for r in reversed(RANKS[:-1]) if ranks.get(r)), "")
    else:
        name = next((texts[m] for m in ("taxonomic_name.txt", "scientific_name.txt", "txt", "cls") if texts.get(m)),
                    "") or str(meta.get("scientific_name") or meta.get("name") or meta.get("label") or "")
    record["raw_name"] = " ".join(name.split())
    for rank in HIGHER_RANKS:
        if ranks.get(rank):
            record[f"hint_{rank}"] = ranks[rank]
    common = texts.get("common_name.txt", "") or str(meta.get("common_name") or "")
    scientific = texts.get("scientific_name.txt", "")
    # TreeOfLife shards store the scientific (or taxonomic) name when no common name is known.
    if common and common not in (scientific, texts.get("taxonomic_name.txt", ""), record["raw_name"]):
        record["common_name"] = common
    for column in ("license", "rights_holder", "source_url"):
        if meta.get(column):
            record[column] = str(meta[column])
    return record


def _webdataset_records(source: SourceConfig) -> pd.DataFrame:
    files = shard_files(source.path)
    if not files:
        raise TaxoclipError(f"source {source.name!r}: no .tar shards at {source.path}")
    rows = []
    base = source.path if source.path.is_dir() else files[0].parent
    for tar_path in files:
        rows.extend(_tar_records(tar_path, base, source))
    return pd.DataFrame(rows)


def _tar_records(tar_path: Path, base: Path, source: SourceConfig) -> list[dict[str, str]]:
    samples: dict[str, dict] = {}
    try:
        with tarfile.open(tar_path, "r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, suffix = _member_parts(member.name)
                sample = samples.setdefault(key, {"texts": {}, "image": None})
                if suffix in IMAGE_MEMBERS and sample["image"] is None:
                    sample["image"] = (member.offset_data, member.size)
                elif suffix.endswith(("txt", "cls", "json")) and member.size < 1_000_000:
                    handle = archive.extractfile(member)
                    sample["texts"][suffix] = handle.read().decode("utf-8", "replace").strip() if handle else ""
    except (tarfile.TarError, OSError) as err:
        raise TaxoclipError(f"source {source.name!r}: cannot read shard {tar_path}: {err}") from None
    relative = tar_path.relative_to(base).as_posix() if tar_path.is_relative_to(base) else tar_path.name
    rows = []
    for key, sample in samples.items():
        if sample["image"] is None:
            continue
        record = _sample_record(key, sample["texts"], source.name_member)
        offset, length = sample["image"]
        record.update(source_id=f"{relative}/{key}", location=str(tar_path), offset=offset, length=length)
        rows.append(record)
    return rows


def read_bytes(location: str, offset: int = -1, length: int = -1) -> bytes:
    """The encoded image of a record: a whole file, or `length` bytes at `offset` of a tar."""
    with open(location, "rb") as handle:
        if offset < 0:
            return handle.read()
        handle.seek(offset)
        data = handle.read(length)
    if len(data) != length:
        raise OSError(f"{location} is shorter than the member at offset {offset}")
    return data
