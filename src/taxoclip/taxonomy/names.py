"""Cleaning of taxon labels as they come from the wild.

Folder names, spreadsheet cells and dataset class strings carry authorities and years
("Amanita muscaria (L.) Lam., 1783"), underscores ("Aegopodium_podagraria"), odd case,
qualifiers ("cf.", "sp."), infraspecific ranks and whole lineages ("00001_Animalia_..._terrestris").
`parse_name` turns one into a `ParsedName`; `clean_label` gives the readable string used as
the `asis` text of evaluation tasks.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from .taxon import RANKS

INFRA_MARKERS = {
    "subsp.": "subsp.", "subsp": "subsp.", "ssp.": "subsp.", "ssp": "subsp.",
    "var.": "var.", "var": "var.", "v.": "var.",
    "f.": "f.", "fo.": "f.", "forma": "f.", "form": "f.",
    "morph": "morph", "cv.": "cv.", "cultivar": "cv.",
}
QUALIFIERS = {"cf.", "cf", "aff.", "aff", "nr.", "nr", "near", "?", "prob.", "agg.", "agg", "s.l.", "s.str.", "sensu"}
UNSPECIFIED = {"sp.", "sp", "spp.", "spp", "sp.nov.", "indet.", "indet", "species"}
HYBRID_MARKERS = {"x", "×"}

_UNDERSCORES = re.compile(r"_+")
_SPACES = re.compile(r"\s+")
_LEADING_INDEX = re.compile(r"^\d+[_\s-]+")
_EPITHET = re.compile(r"^[a-zà-ÿ][a-zà-ÿ-]*$")
_GENUS = re.compile(r"^[A-Z][a-z-]+$|^[a-z]{2,}$|^[A-Z]{2,}$")


@dataclass(frozen=True)
class ParsedName:
    """What a raw label says: a name (genus, epithet, infraspecific part) and any lineage."""

    raw: str
    genus: str = ""
    epithet: str = ""
    infraspecific: str = ""
    lineage: dict[str, str] = field(default_factory=dict)
    qualifier: str = ""
    text: str = ""  # the cleaned free text when the label is not a Latin name

    @property
    def binomial(self) -> str:
        return f"{self.genus} {self.epithet}" if self.genus and self.epithet else ""

    @property
    def name(self) -> str:
        """The canonical name: binomial, else genus or single higher taxon, else cleaned text."""
        return self.binomial or self.genus or self.text

    @property
    def key(self) -> str:
        """Lower-cased canonical name, the form lookups and exclusion lists compare."""
        return self.name.lower()


def normalise_whitespace(text: str) -> str:
    """Underscores to spaces, runs of white space to one, stripped; NFC unicode."""
    text = unicodedata.normalize("NFC", str(text))
    text = _UNDERSCORES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


_AUTHOR_CONNECTORS = {"&", "et", "ex", "in", "al.", "emend.", "de", "von", "van", "der", "den", "da", "du", "la", "le", "d'"}


def _is_authority_token(token: str) -> bool:
    """Authors, years and their punctuation: `(L.)`, `Lam.,`, `1783`, `&`, `ex`, `Bull.:`."""
    bare = token.strip("(),;:[]")
    if not bare or token.startswith("(") or bare[0].isdigit() or bare.lower() in _AUTHOR_CONNECTORS:
        return True
    return bare[0].isupper() or "." in bare


def _is_authority(tokens: list[str]) -> bool:
    """Whether a whole tail of tokens reads as an authority (and so can be dropped)."""
    return all(_is_authority_token(t) for t in tokens)


def _split_lineage(tokens: list[str]) -> dict[str, str] | None:
    """iNat21 style `Animalia Annelida ... Lumbricus terrestris` (7 capitalised-then-epithet tokens)."""
    if len(tokens) < 7:
        return None
    head = tokens[:6]
    if not all(t[:1].isupper() and t[1:].islower() and t.isalpha() for t in head):
        return None
    if head[0] not in ("Animalia", "Plantae", "Fungi", "Bacteria", "Archaea", "Protozoa", "Chromista", "Viruses"):
        return None
    rest = tokens[6:]
    if not all(_EPITHET.match(t) for t in rest):
        return None
    return dict(zip(RANKS, [*head, " ".join(rest)]))


def parse_name(raw: str) -> ParsedName:
    """Parse one label into genus / epithet / infraspecific part, or a lineage, or free text."""
    text = normalise_whitespace(raw)
    text = _LEADING_INDEX.sub("", text) if _LEADING_INDEX.match(text) and not text[:1].isalpha() else text
    tokens = text.replace("\u00d7", " × ").split()
    if not tokens:
        return ParsedName(raw=raw)

    lineage = _split_lineage(tokens)
    if lineage:
        return ParsedName(raw=raw, genus=lineage["genus"], epithet=lineage["species"].split()[0],
                          infraspecific=" ".join(lineage["species"].split()[1:]), lineage=lineage)

    # Labels in odd case carry no case signal: read the first word as the genus.
    if text.isupper() or text.islower() or not (tokens[0][:1].isupper() and tokens[0][1:].islower()):
        tokens = [tokens[0].capitalize(), *[t.lower() for t in tokens[1:]]]
    elif len(tokens) > 1 and tokens[1].isalpha() and tokens[1].isupper() and len(tokens[1]) > 2:
        tokens[1] = tokens[1].lower()  # "Pica HUDSONIA"

    qualifier = ""
    while tokens and tokens[0].lower() in QUALIFIERS:
        qualifier = tokens.pop(0).lower()
    if not tokens:
        return ParsedName(raw=raw, text=text)

    first = tokens[0].strip(",;:")
    if not _GENUS.match(first) or len(tokens[0]) < 2:
        return ParsedName(raw=raw, text=text)
    genus = first.capitalize()
    epithet = infra = ""
    rest = tokens[1:]
    i = 0
    # Skip a qualifier between genus and epithet ("Larus cf. argentatus").
    while i < len(rest) and rest[i].lower() in QUALIFIERS:
        qualifier = rest[i].lower()
        i += 1
    if i < len(rest) and rest[i].lower() in UNSPECIFIED:
        return ParsedName(raw=raw, genus=genus, qualifier=qualifier or "sp.")
    if i < len(rest) and rest[i].lower() in HYBRID_MARKERS and i + 1 < len(rest) and _EPITHET.match(rest[i + 1]):
        epithet = f"× {rest[i + 1]}"
        i += 2
    elif i < len(rest) and _EPITHET.match(rest[i].strip(",")):
        epithet = rest[i].strip(",")
        i += 1
    elif i < len(rest) and not _is_authority(rest[i:]):
        # Not a Latin name after all: a disease or crop label like "Tomato Late blight".
        return ParsedName(raw=raw, text=text)
    if epithet:
        infra_parts: list[str] = []
        while i < len(rest):
            token = rest[i].strip(",")
            marker = INFRA_MARKERS.get(token.lower())
            if marker and i + 1 < len(rest) and _EPITHET.match(rest[i + 1].strip(",")):
                infra_parts += [marker, rest[i + 1].strip(",")]
                i += 2
            elif not infra_parts and _EPITHET.match(token) and token not in ("et", "ex", "in"):
                infra_parts.append(token)  # trinomial without marker: "Ursus arctos horribilis"
                i += 1
            else:
                break
        infra = " ".join(infra_parts)
    return ParsedName(raw=raw, genus=genus, epithet=epithet, infraspecific=infra, qualifier=qualifier)


def clean_label(raw: str) -> str:
    """A label fit to show and to embed: the canonical Latin name, or the tidied free text.

    >>> clean_label("Amanita muscaria (L.) Lam., 1783")
    'Amanita muscaria'
    >>> clean_label("Tomato___Late_blight")
    'Tomato Late blight'
    """
    parsed = parse_name(raw)
    return parsed.name or normalise_whitespace(raw)


def binomial_key(raw: str) -> str:
    """The normalised key for matching species across formattings ("ursus_ARCTOS L." -> "ursus arctos")."""
    return parse_name(raw).key
