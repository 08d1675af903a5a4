"""Duplicate and excluded-image detection over fingerprints (sha256 + 64-bit pHash).

Records are visited in build order; the first of a group of duplicates is kept. A record is
removed, checking in this order, when it matches an excluded image exactly or within the near
threshold (`excluded_image`), has the same bytes as a kept record (`exact_duplicate`), or has a
perceptual hash within `near_threshold` bits of a kept record's (`near_duplicate`: resized,
recompressed or re-exported copies).

The radius search is exact and vectorised (`near_pairs`): the 64 bits are cut into m bands; two
hashes at most t bits apart differ in at most t bands, so they agree exactly on at least m - t
of them. For every choice of m - t bands, hashes are grouped by those bits (a sort) and only
hashes in the same group are compared. m is chosen from the number of distinct hashes to balance
the number of groupings against the number of comparisons: 1M hashes at t = 6 take seconds, not
the hours of comparing all pairs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import TaxoclipError
from .config import IMAGE_EXTENSIONS, DedupConfig
from .sources import read_table

REMOVAL_REASONS: tuple[str, ...] = (
    "unresolved_name", "excluded_species", "failed", "excluded_image", "exact_duplicate", "near_duplicate",
)
"""Why a record is not in the dataset (the `reason` column of reports/removed.csv)."""


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values).astype(np.int64)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    return table[values.view(np.uint8).reshape(-1, 8)].sum(axis=1)


def _band_count(count: int, threshold: int) -> int:
    """The m of the module docstring that minimises groupings (sorts) + comparisons."""
    best, best_cost = threshold + 1, math.inf
    for bands in range(threshold + 1, min(threshold + 12, 64) + 1):
        kept = bands - threshold
        groupings = math.comb(bands, kept)
        key_bits = 64 * kept / bands
        comparisons = groupings * count * count / 2 / 2**key_bits
        cost = groupings * count * (math.log2(count + 1) + 4) + 4 * comparisons
        if cost < best_cost:
            best, best_cost = bands, cost
    return best


def _group_masks(threshold: int, bands: int) -> list[int]:
    edges = [round(64 * i / bands) for i in range(bands + 1)]
    band_masks = [((1 << (hi - lo)) - 1) << lo for lo, hi in zip(edges, edges[1:])]
    return [sum(band_masks[b] for b in chosen) for chosen in itertools.combinations(range(bands), bands - threshold)]


def _same_key_pairs(keys: np.ndarray):
    """All index pairs (i, j) with keys[i] == keys[j], i != j, in batches (each pair once)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    n = len(keys)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    lengths = np.diff(np.r_[starts, n])
    run_end = np.repeat(starts + lengths, lengths)
    position = np.flatnonzero(run_end - np.arange(n) >= 2)
    offset = 1
    while position.size:
        yield order[position], order[position + offset]
        offset += 1
        position = position[position + offset < run_end[position]]


def near_pairs(hashes: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of *distinct* hashes at most `threshold` bits apart: (i, j, distance), i < j."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = []
    if len(hashes) > 1:
        for mask in _group_masks(threshold, _band_count(len(hashes), threshold)):
            for first, second in _same_key_pairs(hashes & np.uint64(mask)):
                distance = popcount(hashes[first] ^ hashes[second])
                near = (distance <= threshold) & (distance > 0)
                low, high = np.minimum(first, second)[near], np.maximum(first, second)[near]
                found.append(np.stack([low, high, distance[near]], axis=1))
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    pairs = np.unique(np.concatenate(found), axis=0)
    return pairs[:, 0], pairs[:, 1], pairs[:, 2]


@dataclass
class ExcludedImages:
    """Fingerprints of images that must not be in the dataset (e.g. evaluation sets)."""

    sha256: dict[str, str] = field(default_factory=dict)
    phash: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sha256) + len(self.phash)


def exclusion_inputs(paths: Iterable[Path]) -> tuple[list[Path], ExcludedImages]:
    """Split `exclude.images` entries into image files still to fingerprint and hashes given in
    lists (`.txt` of hex hashes, or a CSV/Parquet with `sha256` and/or `phash` columns)."""
    files: list[Path] = []
    given = ExcludedImages()
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            files.append(path)
        elif path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"):
            table = read_table(path)
            if not {"sha256", "phash"} & set(table.columns):
                raise TaxoclipError(f"image exclusion list {path} needs a sha256 or phash column")
            for i, row in enumerate(table.to_dict("records")):
                label = f"{path.name}:{i + 1}"
                _add_hash(given, row.get("sha256", ""), label, path)
                _add_hash(given, row.get("phash", ""), label, path)
        elif path.is_file():
            for i, line in enumerate(path.read_text().splitlines()):
                _add_hash(given, line.split("#")[0].strip(), f"{path.name}:{i + 1}", path)
        else:
            raise TaxoclipError(f"image exclusion {path} does not exist")
    return files, given


def _add_hash(target: ExcludedImages, text: str, label: str, path: Path) -> None:
    text = str(text).strip().lower()
    if not text:
        return
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        target.sha256[text] = label
    elif len(text) == 16 and all(c in "0123456789abcdef" for c in text):
        target.phash.append((int(text, 16), label))
    else:
        raise TaxoclipError(f"{label}: {text[:20]!r} is neither a sha256 (64 hex) nor a phash (16 hex) ({path})")


def phash_hex(value: int) -> str:
    return f"{int(value):016x}"


def find_duplicates(ids: Sequence[str], sha256: Sequence[str], phash: Sequence[int], config: DedupConfig,
                    excluded: ExcludedImages | None = None) -> pd.DataFrame:
    """Records to remove, in visiting order: columns id, reason, duplicate_of, distance."""
    excluded = excluded or ExcludedImages()
    record_hashes = np.asarray([int(v) for v in phash], dtype=np.uint64)
    excluded_hashes = np.asarray([v for v, _ in excluded.phash], dtype=np.uint64)
    # Work on distinct hash values: identical hashes (blank frames, many copies) are one value.
    values, inverse = np.unique(np.concatenate([excluded_hashes, record_hashes]), return_inverse=True)
    excluded_value, record_value = inverse[: len(excluded_hashes)], inverse[len(excluded_hashes):].tolist()
    neighbours: dict[int, list[tuple[int, int]]] = {}  # value -> [(distance, value)], only where any
    if config.near or len(excluded_hashes):
        for low, high, distance in zip(*(a.tolist() for a in near_pairs(values, config.near_threshold))):
            neighbours.setdefault(low, []).append((distance, high))
            neighbours.setdefault(high, []).append((distance, low))
    excluded_at: dict[int, str] = {}
    for value, (_, label) in zip(excluded_value.tolist(), excluded.phash):
        excluded_at.setdefault(value, label)
    kept_at: dict[int, int] = {}  # hash value -> earliest kept record
    kept_sha: dict[str, int] = {}
    removed = []
    for index, (record_id, digest, value) in enumerate(zip(ids, sha256, record_value)):
        if digest in excluded.sha256:
            removed.append((record_id, "excluded_image", excluded.sha256[digest], 0))
            continue
        if excluded_at:
            hits = [(0, value)] if value in excluded_at else []
            hits += [(d, v) for d, v in neighbours.get(value, ()) if v in excluded_at]
            if hits:
                distance, near_value = min(hits, key=lambda hit: (hit[0], excluded_at[hit[1]]))
                removed.append((record_id, "excluded_image", excluded_at[near_value], distance))
                continue
        if config.exact and digest in kept_sha:
            removed.append((record_id, "exact_duplicate", ids[kept_sha[digest]], 0))
            continue
        if config.near:
            hits = [(0, kept_at[value])] if value in kept_at else []
            hits += [(d, kept_at[v]) for d, v in neighbours.get(value, ()) if v in kept_at]
            if hits:
                distance, kept = min(hits)
                removed.append((record_id, "near_duplicate", ids[kept], distance))
                continue
        kept_at.setdefault(value, index)
        kept_sha.setdefault(digest, index)
    return pd.DataFrame(removed, columns=["id", "reason", "duplicate_of", "distance"])


def fingerprint_records(records: list[tuple[str, str, int, int]]) -> list[tuple[str, str, int, int, int, str]]:
    """Worker entry point: (id, location, offset, length) -> (id, sha256, phash, width, height, error)."""
    from .images import fingerprint
    from .sources import read_bytes
    from .workers import tick

    out = []
    for record_id, location, offset, length in records:
        try:
            found = fingerprint(read_bytes(location, offset, length))
            out.append((record_id, found.sha256, found.phash, found.width, found.height, ""))
        except Exception as err:  # unreadable or undecodable: a recorded failure
            out.append((record_id, "", 0, 0, 0, f"{type(err).__name__}: {err}"))
        tick()
    return out
