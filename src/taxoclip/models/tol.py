"""Reading and writing tree-of-life banks in the official layout (BIOCLIP.md section 6)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import TaxoclipError
from ..taxonomy.taxon import Taxon
from . import layout


def read_tol_names(path: str | os.PathLike) -> list[Taxon]:
    """The taxa of a `txt_emb_species.json`, in column order."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"cannot read tree-of-life names {path}: {err}") from None
    return [Taxon.from_tol_entry(entry) for entry in entries]


def read_tol_embeddings(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """The [D, N] float32 matrix of a `txt_emb_species.npy` (memory-mapped by default)."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"cannot read tree-of-life embeddings {path}: {err}") from None
    if array.ndim != 2:
        raise TaxoclipError(f"{path}: expected a [D, N] matrix, got shape {array.shape}")
    return array


def write_tol(directory: str | os.PathLike, embeddings: np.ndarray, taxa: list[Taxon]) -> tuple[Path, Path]:
    """Write `embeddings` ([D, N] float32, or [N, D] which is transposed) and taxa in the official layout."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape[1] != len(taxa) and embeddings.shape[0] == len(taxa):
        embeddings = embeddings.T
    if embeddings.shape[1] != len(taxa):
        raise ValueError(f"{embeddings.shape} embeddings for {len(taxa)} taxa")
    directory = Path(directory)
    emb_path, names_path = directory / layout.TOL_EMBEDDINGS, directory / layout.TOL_NAMES
    emb_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(emb_path, np.ascontiguousarray(embeddings))
    names_path.write_text(json.dumps([taxon.to_tol_entry() for taxon in taxa]))
    return emb_path, names_path
