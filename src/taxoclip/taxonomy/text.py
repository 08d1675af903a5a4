"""Every text type of the original TreeOfLife shards, rendered from a `Taxon`.

This module is the one definition of the strings that data writers, the trainer, the
evaluators and predict share (BIOCLIP.md section 2). Keys are the shard member stems.
"""

from __future__ import annotations

from collections.abc import Callable

from .taxon import RANKS, Taxon

CAPTION_FORMAT = "a photo of {}."


def scientific(taxon: Taxon) -> str:
    """`Pica hudsonia`; the genus alone when the epithet is unknown."""
    name = " ".join(part for part in (taxon.genus, taxon.species) if part)
    return name[:1].upper() + name[1:]


def taxonomic(taxon: Taxon) -> str:
    """`Animalia Chordata Aves Passeriformes Corvidae Pica hudsonia` (missing ranks dropped)."""
    return " ".join(value for value in taxon.ranks if value)


def tagged(taxon: Taxon) -> str:
    """`kingdom Animalia phylum Chordata ... species hudsonia` (missing ranks dropped)."""
    return " ".join(f"{rank} {value}" for rank, value in zip(RANKS, taxon.ranks) if value)


def common(taxon: Taxon) -> str:
    """The common name, falling back to the scientific, then the taxonomic name."""
    return taxon.common or scientific(taxon) or taxonomic(taxon)


def _with_common(render: Callable[[Taxon], str]) -> Callable[[Taxon], str]:
    def combined(taxon: Taxon) -> str:
        return f"{render(taxon)} with common name {common(taxon)}"

    combined.__name__ = f"{render.__name__}_with_common"
    return combined


TEXT_TYPES: dict[str, Callable[[Taxon], str]] = {
    "sci": scientific,
    "com": common,
    "taxon": taxonomic,
    "taxonTag": tagged,
    "sci_com": _with_common(scientific),
    "taxon_com": _with_common(taxonomic),
    "taxonTag_com": _with_common(tagged),
}
"""Text type name (= shard caption member stem) -> renderer of the bare text."""

TRAINING_TEXT_TYPES: tuple[str, ...] = ("sci", "com", "taxon", "sci_com", "taxon_com")
"""The five types BioCLIP mixes during training."""

NAME_MEMBERS: dict[str, Callable[[Taxon], str]] = {
    "scientific_name": scientific,
    "taxonomic_name": taxonomic,
    "common_name": common,
}
"""The three bare-name members of a shard sample (stem -> renderer)."""


def text_type_key(name: str) -> str:
    """Canonical text-type key, accepting the lower-cased forms readers see (`taxontag_com`)."""
    lowered = {key.lower(): key for key in TEXT_TYPES}
    aliases = {"scientific": "sci", "common": "com", "taxonomic": "taxon", "tagged": "taxonTag"}
    key = aliases.get(name, name)
    try:
        return lowered[key.lower()]
    except KeyError:
        raise ValueError(f"unknown text type {name!r}; expected one of {', '.join(TEXT_TYPES)}") from None


def render(taxon: Taxon, text_type: str) -> str:
    """The bare text of `taxon` in `text_type` (no caption wrapper)."""
    return TEXT_TYPES[text_type_key(text_type)](taxon)


def caption(text: str) -> str:
    """The training caption: `a photo of <text>.`"""
    return CAPTION_FORMAT.format(text)


def render_caption(taxon: Taxon, text_type: str) -> str:
    """`a photo of <text>.` for one text type."""
    return caption(render(taxon, text_type))


def tol_text(taxon: Taxon) -> str:
    """The class text of the official tree-of-life banks: the 7 ranks, then the common name."""
    return " ".join(part for part in (*taxon.ranks, taxon.common) if part)
