"""Summing class probabilities into groups (higher ranks, label bins), vectorised.

A bank's classes are partitioned once per level into integer group codes; aggregating a
`[B, N]` probability matrix is then one `index_add_` into `[B, G]`, with no Python loop over
taxa. At a rank, two taxa share a group exactly when their whole prefix from kingdom down to
that rank is equal, so homonyms in different lineages (the genus *Morus* of mulberries and of
gannets) stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..taxonomy.taxon import RANKS, rank_index

EPITHET_COLUMN = "species_epithet"
COMMON_COLUMN = "common_name"
TAXON_COLUMNS: tuple[str, ...] = (*RANKS[:-1], EPITHET_COLUMN)
"""Columns of a taxonomic bank's class table, in rank order (the species slot holds the epithet)."""


@dataclass(frozen=True)
class Groups:
    """A partition of a bank's N classes into G groups: class i belongs to group `codes[i]`.

    `table` has one row per group (the columns that name it); `names` is its display name
    (the value at the rank; the binomial at species; the bin or label for custom labels).
    """

    level: str
    codes: np.ndarray  # int64 [N]
    table: pd.DataFrame
    names: np.ndarray  # object [G]
    _on_device: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.names)

    def codes_tensor(self, device: Any = "cpu") -> Any:
        """The codes as an int64 tensor on `device` (copied there once)."""
        import torch

        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = torch.from_numpy(self.codes).to(device)
        return self._on_device[key]


def binomials(classes: pd.DataFrame) -> pd.Series:
    """`Genus epithet` per class where both are known, else ""."""
    genus, epithet = classes["genus"].astype(str), classes[EPITHET_COLUMN].astype(str)
    both = (genus != "") & (epithet != "")
    return (genus + " " + epithet).where(both, "")


def prefix_codes(classes: pd.DataFrame, rank: str) -> np.ndarray:
    """Group code per class: equal codes exactly when kingdom..`rank` are all equal."""
    depth = rank_index(rank) + 1
    codes = np.zeros(len(classes), dtype=np.int64)
    for column in TAXON_COLUMNS[:depth]:
        values, _ = pd.factorize(classes[column].astype(str), sort=False)
        combined = codes * (int(values.max(initial=0)) + 1) + values
        codes, _ = pd.factorize(combined, sort=False)
        codes = codes.astype(np.int64)
    return codes


def taxon_groups(classes: pd.DataFrame, rank: str) -> Groups:
    """The groups of a taxonomic class table at `rank` (species: one group per distinct lineage)."""
    rank = RANKS[rank_index(rank)]
    depth = rank_index(rank) + 1
    codes = prefix_codes(classes, rank)
    _, first = np.unique(codes, return_index=True)  # group g's first member (codes are 0..G-1 in order)
    members = classes.iloc[first]
    table = pd.DataFrame({column: members[column].astype(str).to_numpy() for column in TAXON_COLUMNS[:depth]})
    if rank == "species":
        names = binomials(table).to_numpy(dtype=object)
        common = members[COMMON_COLUMN].astype(str).to_numpy() if COMMON_COLUMN in members else [""] * len(table)
        table[COMMON_COLUMN] = common
    else:
        names = table[rank].to_numpy(dtype=object)
    return Groups(rank, codes, table, names)


def value_groups(values: pd.Series | list[str], level: str) -> Groups:
    """Groups of equal values (custom labels, or their bins), in order of first appearance."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=str), sort=False)
    names = np.asarray(uniques, dtype=object)
    return Groups(level, codes.astype(np.int64), pd.DataFrame({level: names}), names)


def aggregate(probs: Any, groups: Groups) -> Any:
    """Sum `[B, N]` class probabilities into `[B, G]` group probabilities (one index_add_)."""
    import torch

    codes = groups.codes_tensor(probs.device)
    out = torch.zeros(probs.shape[0], groups.size, dtype=probs.dtype, device=probs.device)
    return out.index_add_(1, codes, probs)


def aggregate_to_rank(probs: Any, bank: Any, rank: str) -> Any:
    """`[B, G]` probabilities of the bank's groups at `rank` (see `LabelBank.groups`)."""
    return aggregate(probs, bank.groups(rank))
