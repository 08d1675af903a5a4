"""Duplicate and excluded-image detection over fingerprints (sha256 + 64-bit pHash).

Records are visited in build order; the first of a group of duplicates is kept. A record is
removed, checking in this order, when it matches an excluded image exactly or within the near
threshold, has the same bytes as a kept record (`exact_duplicate`), or a perceptual hash within
`near_threshold` bits of a kept record's (`near_duplicate`: resized, recompressed or re-exported
copies). Near neighbours are found with a multi-index hash: the 64 bits are cut into
threshold + 1 bands, and by pigeonhole two hashes within the threshold agree on at least one
whole band, so only records sharing a band value are compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import TaxoclipError
from .config import IMAGE_EXTENSIONS, DedupConfig
from .sources import read_table

REMOVAL_REASONS: tuple[str, ...] = (
    "unresolved_name", "excluded_species", "failed", "excluded_image", "exact_duplicate", "near_duplicate",
)
"""Why a record is not in the dataset (the `reason` column of reports/removed.csv)."""


class NearIndex:
    """Hamming-radius search over 64-bit hashes by band tables (exact for radius <= threshold)."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        bands = threshold + 1
        edges = [round(64 * i / bands) for i in range(bands + 1)]
        self.bands = [(lo, (1 << (hi - lo)) - 1) for lo, hi in zip(edges, edges[1:])]
        self.tables: list[dict[int, list[int]]] = [{} for _ in self.bands]
        self.hashes: list[int] = []
        self.labels: list[str] = []

    def add(self, value: int, label: str) -> None:
        slot = len(self.hashes)
        self.hashes.append(value)
        self.labels.append(label)
        for table, (shift, mask) in zip(self.tables, self.bands):
            table.setdefault((value >> shift) & mask, []).append(slot)

    def nearest(self, value: int) -> tuple[str, int] | None:
        """The closest stored hash within the threshold (earliest on ties), as (label, distance)."""
        best: tuple[int, int] | None = None
        for table, (shift, mask) in zip(self.tables, self.bands):
            for slot in table.get((value >> shift) & mask, ()):
                distance = (value ^ self.hashes[slot]).bit_count()
                if distance <= self.threshold and (best is None or (distance, slot) < best):
                    best = (distance, slot)
        return None if best is None else (self.labels[best[1]], best[0])


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
    excluded_near = NearIndex(config.near_threshold)
    for value, label in excluded.phash:
        excluded_near.add(value, label)
    kept_sha: dict[str, str] = {}
    kept_near = NearIndex(config.near_threshold)
    removed = []
    for record_id, digest, value in zip(ids, sha256, phash):
        value = int(value)
        if digest in excluded.sha256:
            removed.append((record_id, "excluded_image", excluded.sha256[digest], 0))
            continue
        hit = excluded_near.nearest(value) if excluded.phash else None
        if hit:
            removed.append((record_id, "excluded_image", hit[0], hit[1]))
            continue
        if config.exact and digest in kept_sha:
            removed.append((record_id, "exact_duplicate", kept_sha[digest], 0))
            continue
        if config.near:
            hit = kept_near.nearest(value)
            if hit:
                removed.append((record_id, "near_duplicate", hit[0], hit[1]))
                continue
            kept_near.add(value, record_id)
        kept_sha.setdefault(digest, record_id)
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
