"""The training-shard sample schema and dataset layout (BIOCLIP.md section 3), in one place.

Writers (`taxoclip data build`), readers (the trainer, `data check`) and evaluators all use
these names. A built dataset directory looks like::

    OUT/catalog.csv, OUT/catalog.parquet     one row per image (CATALOG_COLUMNS)
    OUT/<split>/shard-000000.tar ...         webdataset shards (11 members per sample)
    OUT/<split>/sizes.json                   {"shard-000000.tar": n_samples, ...}
"""

from __future__ import annotations

from ..taxonomy.taxon import RANKS, Taxon
from ..taxonomy.text import NAME_MEMBERS, TEXT_TYPES, caption

IMAGE_MEMBER = "jpg"
NAME_TEXT_MEMBERS: tuple[str, ...] = tuple(f"{stem}.txt" for stem in NAME_MEMBERS)
"""`scientific_name.txt`, `taxonomic_name.txt`, `common_name.txt` (bare names)."""
CAPTION_MEMBERS: tuple[str, ...] = tuple(f"{text_type}.txt" for text_type in TEXT_TYPES)
"""`sci.txt` ... `taxonTag_com.txt`: `a photo of <text>.` for each text type."""
MEMBERS: tuple[str, ...] = (IMAGE_MEMBER, *NAME_TEXT_MEMBERS, *CAPTION_MEMBERS)
"""The 11 members of every sample, exactly those of the original shards."""

SPLITS: tuple[str, ...] = ("train", "val", "train_small")
SHARD_NAME = "shard-{index:06d}.tar"
SIZES_FILE = "sizes.json"
CATALOG_CSV = "catalog.csv"
CATALOG_PARQUET = "catalog.parquet"
CATALOG_COLUMNS: tuple[str, ...] = (
    "id", "split", "source", "source_id", *RANKS, "common_name",
    "license", "rights_holder", "source_url",
)
"""Catalog columns; `species` holds the binomial."""

DEFAULT_IMAGE_SIZE = 224
DEFAULT_MAX_SHARD_SAMPLES = 100_000
DEFAULT_MAX_SHARD_BYTES = 3_000_000_000


def member_key(member: str) -> str:
    """The key webdataset readers see for a member: lower-cased (`taxontag_com.txt`)."""
    return member.lower()


def sample_texts(taxon: Taxon) -> dict[str, str]:
    """All 10 text members of a sample for `taxon` (member name -> text)."""
    texts = {f"{stem}.txt": render(taxon) for stem, render in NAME_MEMBERS.items()}
    texts.update({f"{text_type}.txt": caption(render(taxon)) for text_type, render in TEXT_TYPES.items()})
    return texts


def caption_member(text_type: str) -> str:
    """The member holding the caption of a text type, as readers see it (`taxontag_com.txt`)."""
    from ..taxonomy.text import text_type_key

    return member_key(f"{text_type_key(text_type)}.txt")


# -- what `taxoclip data build` writes beside the shards ------------------------------------------
CATALOG_EXTRA_COLUMNS: tuple[str, ...] = ("shard", "sha256", "raw_name", "name_status")
"""Columns the builder appends after CATALOG_COLUMNS: the shard file holding the sample, the sha256
of the source image bytes, the name as the source gave it, and the resolver's status for it."""

BUILD_RECORD = "build.json"
"""Written last by a finished build (config fingerprint, counts, timings); its presence means complete."""
REPORTS_DIR = "reports"
"""OUT/reports/: names.csv, unresolved_names.csv, removed.csv, failures.csv."""
STATE_DIR = ".build"
LOCK_FILE = ".build.lock"
"""Held (flock) by the build writing OUT; removed when the build finishes."""
"""OUT/.build/: resumable working state of an unfinished build (removed when it finishes)."""

SHARD_GLOB = "shard-*.tar"
DEFAULT_JPEG_QUALITY = 95
DEFAULT_RESIZE_POLICY = "crop"
RESIZE_POLICIES: tuple[str, ...] = ("crop", "pad", "squash", "shorter")
"""`crop`: shorter side to size, centre crop (default; what open_clip's eval transform sees);
`pad`: longer side to size, pad to a square; `squash`: size x size ignoring aspect (the original
TreeOfLife build); `shorter`: shorter side to size, aspect kept, not square."""
DEFAULT_VAL_FRACTION = 0.05
DEFAULT_SPLIT_SEED = 17
DEFAULT_TRAIN_SMALL_FRACTION = 0.1
