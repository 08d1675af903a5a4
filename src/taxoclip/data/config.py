"""The YAML config of `taxoclip data build`, read into dataclasses with one-line errors.

A config names an output directory and one or more sources, plus optional sections::

    output: ../../out/my-set            # relative paths are relative to the config file
    workers: 4                          # processes (default: all cores)
    sources:
      - {name: museum, kind: folder, path: photos/}
      - {name: sheet, kind: manifest, path: images.csv, url_column: image_url, name_column: taxon}
      - {name: old, kind: webdataset, path: old-shards/}
    image: {size: 224, resize: crop, jpeg_quality: 95}
    shards: {max_samples: 100000, max_bytes: 3.0e9}
    splits: {seed: 17, val_fraction: 0.05, train_small_fraction: 0.1}
    dedup: {exact: true, near: true, near_threshold: 4}
    exclude: {images: [eval-set/], species: ["Ursus arctos"], species_files: [rare.csv]}
    taxonomy: {map: {"Corvus corone cornix": "Corvus cornix"}, common_names: [], synonyms: [], accept: [...]}
    download: {connections: 16, per_host_rate: 4, retries: 3, backoff: 1.0, timeout: 30}

See docs/data.md for every key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import TaxoclipError
from ..taxonomy.resolve import STATUSES
from ..taxonomy.taxon import HIGHER_RANKS, RANKS
from . import schema

SOURCE_KINDS: tuple[str, ...] = ("folder", "manifest", "webdataset")
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
DEFAULT_ACCEPT: tuple[str, ...] = ("species", "infraspecific", "synonym", "genus", "higher", "manual")
"""Resolver statuses whose images go into the dataset (`manual`: lineage given in `taxonomy.map`)."""


class ConfigError(TaxoclipError):
    """A config problem, reported as `CONFIG: where: what`."""


@dataclass(frozen=True)
class SourceConfig:
    """One input collection. Column options apply to manifests; `None` means auto-detect."""

    name: str
    kind: str
    path: Path
    hints: dict[str, str] = field(default_factory=dict)
    license: str = ""
    rights_holder: str = ""
    source_url: str = ""
    val_fraction: float | None = None
    train_small_fraction: float | None = None
    root: Path | None = None
    path_column: str | None = None
    url_column: str | None = None
    name_column: str | None = None
    rank_columns: dict[str, str] | None = None
    common_name_column: str | None = None
    license_column: str | None = None
    rights_holder_column: str | None = None
    source_url_column: str | None = None
    id_column: str | None = None
    name_member: str | None = None


@dataclass(frozen=True)
class ImageConfig:
    size: int = schema.DEFAULT_IMAGE_SIZE
    resize: str = schema.DEFAULT_RESIZE_POLICY
    jpeg_quality: int = schema.DEFAULT_JPEG_QUALITY
    pad_color: tuple[int, int, int] = (0, 0, 0)


@dataclass(frozen=True)
class ShardConfig:
    max_samples: int = schema.DEFAULT_MAX_SHARD_SAMPLES
    max_bytes: float = schema.DEFAULT_MAX_SHARD_BYTES


@dataclass(frozen=True)
class SplitConfig:
    seed: int = schema.DEFAULT_SPLIT_SEED
    val_fraction: float = schema.DEFAULT_VAL_FRACTION
    train_small_fraction: float = schema.DEFAULT_TRAIN_SMALL_FRACTION


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True
    near: bool = True
    near_threshold: int = 4


@dataclass(frozen=True)
class ExcludeConfig:
    images: tuple[Path, ...] = ()
    species: tuple[str, ...] = ()
    species_files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class TaxonomyConfig:
    map: dict[str, Any] = field(default_factory=dict)
    common_names: tuple[Path, ...] = ()
    synonyms: tuple[Path, ...] = ()
    accept: tuple[str, ...] = DEFAULT_ACCEPT


@dataclass(frozen=True)
class DownloadConfig:
    connections: int = 16
    per_host_rate: float = 4.0
    retries: int = 3
    backoff: float = 1.0
    timeout: float = 30.0
    max_bytes: int = 50_000_000
    cache_dir: Path | None = None
    user_agent: str = "taxoclip-data-build (+https://github.com/taxoclip)"


@dataclass(frozen=True)
class BuildConfig:
    """A whole `data build` config, paths resolved against the config file's directory."""

    output: Path
    sources: tuple[SourceConfig, ...]
    workers: int | None = None
    image: ImageConfig = ImageConfig()
    shards: ShardConfig = ShardConfig()
    splits: SplitConfig = SplitConfig()
    dedup: DedupConfig = DedupConfig()
    exclude: ExcludeConfig = ExcludeConfig()
    taxonomy: TaxonomyConfig = TaxonomyConfig()
    download: DownloadConfig = DownloadConfig()
    origin: str = field(default="<dict>", compare=False)

    def fingerprint(self) -> str:
        """A hash of everything that decides the built samples (not workers, not download tuning)."""
        data = asdict(self)
        for key in ("workers", "origin", "download"):
            data.pop(key)
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def download_dir(self) -> Path:
        return self.download.cache_dir or self.output / schema.STATE_DIR / "downloads"


# -- reading --------------------------------------------------------------------------------------

def load_config(path: str | os.PathLike) -> BuildConfig:
    """Read and validate a YAML config file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(err, 'problem', err)})") from None
    return parse_config(raw, base=path.resolve().parent, origin=str(path))


def parse_config(raw: Any, base: str | os.PathLike = ".", origin: str = "<dict>") -> BuildConfig:
    """Validate a config mapping (as loaded from YAML); relative paths resolve against `base`."""
    reader = _Reader(origin, Path(base))
    return reader.config(raw)


class _Reader:
    def __init__(self, origin: str, base: Path):
        self.origin = origin
        self.base = base

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.origin}: {where}: {message}" if where else f"{self.origin}: {message}")

    # -- scalar helpers ----------------------------------------------------------------------------
    def mapping(self, value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r} (expected one of: {', '.join(allowed)})")
        return dict(value)

    def number(self, value: Any, where: str, kind: type, low: float | None = None, high: float | None = None):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
            raise self.fail(where, f"expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f">= {low}"
            raise self.fail(where, f"must be {bounds}, got {value!r}")
        return kind(value)

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, got {value!r}")
        return value

    def text(self, value: Any, where: str, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.fail(where, f"expected a string, got {value!r}")
        value = str(value)
        if choices is not None and value not in choices:
            raise self.fail(where, f"{value!r} is not one of: {', '.join(choices)}")
        return value

    def path(self, value: Any, where: str) -> Path:
        text = self.text(value, where)
        path = Path(os.path.expandvars(text)).expanduser()
        return path if path.is_absolute() else (self.base / path).resolve()

    def listing(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if isinstance(value, str | int | float):
            return [value]
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return value

    def section(self, raw: Mapping, key: str, cls: type, converters: dict[str, Any]) -> Any:
        """Read `raw[key]` into dataclass `cls`; converters: field -> callable(value, where)."""
        names = tuple(f.name for f in fields(cls))
        values = self.mapping(raw.get(key), key, names)
        return cls(**{name: converters[name](value, f"{key}.{name}") for name, value in values.items()})

    # -- the config --------------------------------------------------------------------------------
    def config(self, raw: Any) -> BuildConfig:
        top_keys = ("output", "workers", "sources", "image", "shards", "splits", "dedup", "exclude", "taxonomy",
                    "download")
        if not isinstance(raw, Mapping):
            raise self.fail("", "a config is a mapping with at least `output` and `sources`")
        raw = self.mapping(raw, "", top_keys)
        if "output" not in raw:
            raise self.fail("", "missing `output` (the dataset directory to write)")
        sources_raw = self.listing(raw.get("sources"), "sources")
        if not sources_raw:
            raise self.fail("sources", "give at least one source (folder, manifest or webdataset)")
        sources = tuple(self.source(item, i) for i, item in enumerate(sources_raw))
        names = [s.name for s in sources]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise self.fail("sources", f"two sources are named {duplicate!r}; give each a unique `name`")
        number, text = self.number, self.text
        image = self.section(raw, "image", ImageConfig, {
            "size": lambda v, w: number(v, w, int, 8, 4096),
            "resize": lambda v, w: text(v, w, schema.RESIZE_POLICIES),
            "jpeg_quality": lambda v, w: number(v, w, int, 1, 100),
            "pad_color": self.colour,
        })
        shards = self.section(raw, "shards", ShardConfig, {
            "max_samples": lambda v, w: number(v, w, int, 1),
            "max_bytes": lambda v, w: number(v, w, float, 1e5),
        })
        splits = self.section(raw, "splits", SplitConfig, {
            "seed": lambda v, w: number(v, w, int),
            "val_fraction": lambda v, w: number(v, w, float, 0.0, 1.0),
            "train_small_fraction": lambda v, w: number(v, w, float, 0.0, 1.0),
        })
        dedup = self.section(raw, "dedup", DedupConfig, {
            "exact": self.boolean, "near": self.boolean,
            "near_threshold": lambda v, w: number(v, w, int, 0, 12),
        })
        exclude = self.section(raw, "exclude", ExcludeConfig, {
            "images": lambda v, w: tuple(self.path(p, f"{w}[{i}]") for i, p in enumerate(self.listing(v, w))),
            "species": lambda v, w: tuple(self.text(s, f"{w}[{i}]") for i, s in enumerate(self.listing(v, w))),
            "species_files": lambda v, w: tuple(self.path(p, f"{w}[{i}]") for i, p in enumerate(self.listing(v, w))),
        })
        taxonomy = self.section(raw, "taxonomy", TaxonomyConfig, {
            "map": self.name_map,
            "common_names": lambda v, w: tuple(self.path(p, f"{w}[{i}]") for i, p in enumerate(self.listing(v, w))),
            "synonyms": lambda v, w: tuple(self.path(p, f"{w}[{i}]") for i, p in enumerate(self.listing(v, w))),
            "accept": lambda v, w: tuple(self.text(s, f"{w}[{i}]", (*STATUSES, "manual"))
                                         for i, s in enumerate(self.listing(v, w))),
        })
        download = self.section(raw, "download", DownloadConfig, {
            "connections": lambda v, w: number(v, w, int, 1, 1024),
            "per_host_rate": lambda v, w: number(v, w, float, 0.0),
            "retries": lambda v, w: number(v, w, int, 0, 20),
            "backoff": lambda v, w: number(v, w, float, 0.0),
            "timeout": lambda v, w: number(v, w, float, 0.1),
            "max_bytes": lambda v, w: number(v, w, int, 1),
            "cache_dir": self.path,
            "user_agent": text,
        })
        workers = None if raw.get("workers") is None else number(raw["workers"], "workers", int, 1, 1024)
        return BuildConfig(output=self.path(raw["output"], "output"), sources=sources, workers=workers,
                           image=image, shards=shards, splits=splits, dedup=dedup, exclude=exclude,
                           taxonomy=taxonomy, download=download, origin=self.origin)

    def colour(self, value: Any, where: str) -> tuple[int, int, int]:
        if not (isinstance(value, list) and len(value) == 3):
            raise self.fail(where, f"expected [r, g, b], got {value!r}")
        return tuple(self.number(c, where, int, 0, 255) for c in value)  # type: ignore[return-value]

    def name_map(self, value: Any, where: str) -> dict[str, Any]:
        """`{raw name: replacement name}` or `{raw name: {kingdom: ..., ..., species: ..., common_name: ...}}`."""
        if not isinstance(value, Mapping):
            raise self.fail(where, "expected a mapping of source names to names or lineages")
        out: dict[str, Any] = {}
        for key, target in value.items():
            if isinstance(target, Mapping):
                allowed = (*RANKS, "common_name")
                lineage = self.mapping(target, f"{where}[{key!r}]", allowed)
                out[str(key)] = {k: self.text(v, f"{where}[{key!r}].{k}") for k, v in lineage.items() if v is not None}
            else:
                out[str(key)] = self.text(target, f"{where}[{key!r}]")
        return out

    def source(self, item: Any, index: int) -> SourceConfig:
        where = f"sources[{index}]"
        allowed = tuple(f.name for f in fields(SourceConfig))
        values = self.mapping(item, where, allowed)
        if "kind" not in values or "path" not in values:
            raise self.fail(where, "every source needs `kind` (folder, manifest or webdataset) and `path`")
        kind = self.text(values["kind"], f"{where}.kind", SOURCE_KINDS)
        path = self.path(values["path"], f"{where}.path")
        name = self.text(values.get("name") or path.stem, f"{where}.name")
        if "/" in name or not name.strip():
            raise self.fail(f"{where}.name", f"{name!r} is not a usable source name (no slashes)")
        manifest_only = ("root", "path_column", "url_column", "name_column", "rank_columns", "common_name_column",
                         "license_column", "rights_holder_column", "source_url_column", "id_column")
        if kind != "manifest":
            stray = next((k for k in manifest_only if k in values), None)
            if stray:
                raise self.fail(f"{where}.{stray}", f"only manifest sources take `{stray}`")
        if kind != "webdataset" and "name_member" in values:
            raise self.fail(f"{where}.name_member", "only webdataset sources take `name_member`")
        out: dict[str, Any] = {"name": name, "kind": kind, "path": path}
        for key in ("license", "rights_holder", "source_url", "path_column", "url_column", "name_column",
                    "common_name_column", "license_column", "rights_holder_column", "source_url_column",
                    "id_column", "name_member"):
            if values.get(key) is not None:
                out[key] = self.text(values[key], f"{where}.{key}")
        for key in ("val_fraction", "train_small_fraction"):
            if values.get(key) is not None:
                out[key] = self.number(values[key], f"{where}.{key}", float, 0.0, 1.0)
        if values.get("root") is not None:
            out["root"] = self.path(values["root"], f"{where}.root")
        if values.get("hints") is not None:
            hints = self.mapping(values["hints"], f"{where}.hints", HIGHER_RANKS)
            out["hints"] = {k: self.text(v, f"{where}.hints.{k}") for k, v in hints.items()}
        if values.get("rank_columns") is not None:
            ranks = self.mapping(values["rank_columns"], f"{where}.rank_columns", RANKS)
            out["rank_columns"] = {k: self.text(v, f"{where}.rank_columns.{k}") for k, v in ranks.items()}
        if "path_column" in out and "url_column" in out:
            raise self.fail(where, "give either `path_column` or `url_column`, not both")
        return SourceConfig(**out)
