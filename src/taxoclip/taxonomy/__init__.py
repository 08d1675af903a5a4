"""Ranks, taxa, text types, prompt templates, name cleaning and offline lineage resolution."""

from .names import ParsedName, binomial_key, clean_label, parse_name
from .taxon import HIGHER_RANKS, RANKS, Taxon, rank_index
from .text import NAME_MEMBERS, TEXT_TYPES, TRAINING_TEXT_TYPES, caption, render, render_caption, tol_text

__all__ = [
    "HIGHER_RANKS", "NAME_MEMBERS", "RANKS", "TEXT_TYPES", "TRAINING_TEXT_TYPES", "ParsedName", "Taxon",
    "binomial_key", "caption", "clean_label", "parse_name", "rank_index", "render", "render_caption", "tol_text",
]
