"""The seven Linnaean ranks and the `Taxon` record every stage shares.

A `Taxon` holds the names exactly as the tree-of-life files store them: six capitalised
higher ranks, the species *epithet* in lower case, "" for a missing rank, and an optional
English common name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

RANKS: tuple[str, ...] = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
"""Kingdom to species. The species slot holds the epithet ("hudsonia"), never the binomial."""

HIGHER_RANKS: tuple[str, ...] = RANKS[:-1]


def rank_index(rank: str) -> int:
    """Position of `rank` in RANKS; raises a one-line ValueError for an unknown rank."""
    key = rank.strip().lower()
    if key in ("cls", "klass"):
        key = "class"
    if key == "epithet":
        key = "species"
    try:
        return RANKS.index(key)
    except ValueError:
        raise ValueError(f"unknown rank {rank!r}; expected one of {', '.join(RANKS)}") from None


def _clean_rank_value(value: object) -> str:
    if value is None:
        return ""
    text = " ".join(str(value).split())
    if text.lower() in ("", "nan", "none", "null", "unknown", "(unidentified)", "not_classified"):
        return ""
    return text


@dataclass(frozen=True)
class Taxon:
    """A lineage from kingdom to species epithet, plus a common name ("" where unknown)."""

    kingdom: str = ""
    phylum: str = ""
    class_: str = ""
    order: str = ""
    family: str = ""
    genus: str = ""
    species: str = ""
    common: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        values = [_clean_rank_value(getattr(self, name)) for name in _FIELDS]
        higher = [v.capitalize() for v in values[:6]]
        epithet = values[6].lower()
        # A binomial in the species slot ("Pica hudsonia") keeps only its epithet.
        parts = epithet.split()
        if len(parts) >= 2 and (not higher[5] or parts[0] == higher[5].lower()):
            if not higher[5]:
                higher[5] = parts[0].capitalize()
            epithet = " ".join(parts[1:])
        for name, value in zip(_FIELDS, [*higher, epithet]):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "common", " ".join(str(self.common or "").split()))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_ranks(cls, ranks: Sequence[str] | Mapping[str, str], common: str = "") -> Taxon:
        """From a 7-item sequence (kingdom..epithet) or a mapping keyed by rank names.

        A mapping's `species` may be a binomial or an epithet; `class`, `cls` and `class_` all work.
        """
        if isinstance(ranks, Mapping):
            get = {str(k).lower().rstrip("_"): v for k, v in ranks.items()}
            if "cls" in get and "class" not in get:
                get["class"] = get["cls"]
            values = [get.get(rank, "") for rank in RANKS]
            common = common or get.get("common", "") or get.get("common_name", "") or ""
        else:
            values = list(ranks) + [""] * (7 - len(ranks))
            if len(values) != 7:
                raise ValueError(f"expected 7 ranks, got {len(ranks)}")
        return cls(*values, common=common or "")

    @classmethod
    def from_tol_entry(cls, entry: Sequence) -> Taxon:
        """From one entry of an official `txt_emb_species.json`: `[[7 ranks], common]`."""
        ranks, common = entry
        return cls.from_ranks(list(ranks), common=common or "")

    def to_tol_entry(self) -> list:
        """The official json entry `[[kingdom, ..., epithet], common]`."""
        return [list(self.ranks), self.common]

    # -- views ----------------------------------------------------------------------------------
    @property
    def ranks(self) -> tuple[str, ...]:
        """The 7 rank values, "" for missing ones (species = epithet)."""
        return tuple(getattr(self, name) for name in _FIELDS)

    def get(self, rank: str) -> str:
        """The value at `rank`; for "species" the binomial (genus + epithet)."""
        index = rank_index(rank)
        if index == 6:
            return self.binomial
        return self.ranks[index]

    def as_dict(self, binomial: bool = True) -> dict[str, str]:
        """Rank name -> value; `species` holds the binomial unless `binomial=False`."""
        out = dict(zip(RANKS, self.ranks))
        if binomial:
            out["species"] = self.binomial
        out["common_name"] = self.common
        return out

    @property
    def epithet(self) -> str:
        return self.species

    @property
    def binomial(self) -> str:
        """"Genus epithet" when both are known, else ""."""
        return f"{self.genus} {self.species}" if self.genus and self.species else ""

    @property
    def deepest_rank(self) -> str | None:
        """The lowest rank with a value, or None for an empty taxon."""
        for rank, value in zip(reversed(RANKS), reversed(self.ranks)):
            if value:
                return rank
        return None

    @property
    def empty(self) -> bool:
        return not any(self.ranks)

    @property
    def complete(self) -> bool:
        return all(self.ranks)

    def truncated(self, rank: str) -> Taxon:
        """The same lineage cut below `rank` (no common name: it names the species)."""
        keep = rank_index(rank) + 1
        values = list(self.ranks[:keep]) + [""] * (7 - keep)
        return Taxon(*values)

    def prefix(self, rank: str) -> tuple[str, ...]:
        """Rank values from kingdom down to `rank`: the key two taxa share at that rank."""
        return self.ranks[: rank_index(rank) + 1]


_FIELDS: tuple[str, ...] = ("kingdom", "phylum", "class_", "order", "family", "genus", "species")


def taxa_from_records(records: Iterable[Mapping[str, str]]) -> list[Taxon]:
    """Taxa from dict-like rows with rank columns (and optionally `common_name`)."""
    return [Taxon.from_ranks(row) for row in records]
