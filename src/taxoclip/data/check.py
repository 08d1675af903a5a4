"""`taxoclip data check`: find corrupt, truncated, incomplete or inconsistent shards.

Checks, per split folder: sizes.json lists exactly the shard files present; every tar reads to
its end-of-archive marker (a tar cut at a member boundary still lists fine, so the marker is
checked explicitly); every sample has exactly the 11 members of `schema.MEMBERS` and non-empty
UTF-8 texts; every `jpg` is a whole JPEG (SOI ... EOI, or fully decoded with `decode=True`);
sample counts match sizes.json; no key appears twice in a split; val shares no sample with
train and train_small is a subset of train; the catalog lists exactly the shards' samples.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TaxoclipError
from . import schema

EXPECTED_MEMBERS = frozenset(schema.member_key(m) for m in schema.MEMBERS)
_BLOCK = 512


@dataclass
class ShardCheck:
    path: str
    keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """Problems found (one line each) and what was seen per split."""

    directory: Path
    problems: list[str] = field(default_factory=list)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = archive.next()
        if member is None:
            return
        yield member


def _check_jpeg(data: bytes, decode: bool) -> str:
    if decode:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        except Exception as err:
            return f"jpg does not decode ({type(err).__name__}: {err})"
        return ""
    if not data.startswith(b"\xff\xd8"):
        return "jpg is not a JPEG (no SOI marker)"
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "jpg is cut short (no EOI marker)"
    return ""


def check_shard(path: str | os.PathLike, decode: bool = False) -> ShardCheck:
    """Read one tar to its end; the sample keys in order and any problems."""
    path = Path(path)
    result = ShardCheck(str(path))
    size = path.stat().st_size
    samples: dict[str, list[str]] = {}
    order: list[str] = []
    end = 0
    try:
        with tarfile.open(path, "r:") as archive:
            for member in _members(archive):
                data_end = member.offset_data + member.size
                if data_end > size:
                    result.problems.append(f"{path.name}: truncated inside member {member.name}")
                    break
                end = data_end + (-member.size % _BLOCK)
                directory, _, base = member.name.rpartition("/")
                stem, _, suffix = base.partition(".")
                key = f"{directory}/{stem}" if directory else stem
                if key not in samples:
                    samples[key] = []
                    order.append(key)
                elif order[-1] != key:
                    result.problems.append(f"{path.name}: sample {key} is split across the tar")
                samples[key].append(suffix.lower())
                handle = archive.extractfile(member)
                data = handle.read() if handle else b""
                if suffix.lower() == schema.IMAGE_MEMBER:
                    problem = _check_jpeg(data, decode)
                    if problem:
                        result.problems.append(f"{path.name}: {key}: {problem}")
                elif suffix.lower().endswith(".txt"):
                    try:
                        if not data.decode("utf-8").strip():
                            result.problems.append(f"{path.name}: {key}: {suffix} is empty")
                    except UnicodeDecodeError:
                        result.problems.append(f"{path.name}: {key}: {suffix} is not UTF-8")
    except (tarfile.TarError, OSError, EOFError) as err:
        result.problems.append(f"{path.name}: unreadable tar ({type(err).__name__}: {err})")
        return result
    with open(path, "rb") as handle:
        handle.seek(end)
        trailer = handle.read(2 * _BLOCK)
    if len(trailer) < 2 * _BLOCK or trailer.strip(b"\x00"):
        result.problems.append(f"{path.name}: no end-of-archive marker (truncated or still being written)")
    for key in order:
        members = Counter(samples[key])
        duplicated = sorted(m for m, n in members.items() if n > 1)
        present = set(members)
        if duplicated:
            result.problems.append(f"{path.name}: {key}: members repeated: {', '.join(duplicated)}")
        if present != EXPECTED_MEMBERS:
            missing = sorted(EXPECTED_MEMBERS - present)
            extra = sorted(present - EXPECTED_MEMBERS)
            detail = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "",
                                           f"unexpected {', '.join(extra)}" if extra else "") if x)
            result.problems.append(f"{path.name}: {key}: {detail}")
    result.keys = order
    return result


def _check_shard_args(args: tuple[str, bool]) -> ShardCheck:
    return check_shard(*args)


def check_dataset(directory: str | os.PathLike, decode: bool = False, workers: int = 1) -> CheckReport:
    """Check a built dataset folder (OUT with OUT/<split>/shard-*.tar)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TaxoclipError(f"{directory} is not a folder")
    report = CheckReport(directory)
    split_dirs = [directory / s for s in schema.SPLITS if (directory / s).is_dir()]
    unfinished = (directory / schema.STATE_DIR).exists()
    if not split_dirs and not unfinished:
        raise TaxoclipError(f"{directory} holds no split folders ({', '.join(schema.SPLITS)})")
    if unfinished:
        report.problems.append(f"unfinished build ({schema.STATE_DIR}/ present): rerun `taxoclip data build`")
    keys_by_split: dict[str, list[str]] = {}
    jobs: list[tuple[str, Path]] = []
    sizes_by_split: dict[str, dict[str, int]] = {}
    for split_dir in split_dirs:
        split = split_dir.name
        sizes = _read_sizes(split_dir, report)
        sizes_by_split[split] = sizes
        present = {p.name for p in split_dir.glob(schema.SHARD_GLOB)}
        for name in sorted(set(sizes) - present):
            report.problems.append(f"{split}/{name}: listed in {schema.SIZES_FILE} but missing")
        for name in sorted(present - set(sizes)):
            report.problems.append(f"{split}/{name}: not listed in {schema.SIZES_FILE}")
        for leftover in sorted(split_dir.glob(".*.tmp")):
            report.problems.append(f"{split}/{leftover.name}: leftover temporary file")
        jobs += [(split, split_dir / name) for name in sorted(present)]
    args = [(str(path), decode) for _, path in jobs]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as executor:
            results = list(executor.map(_check_shard_args, args))
    else:
        results = [check_shard(*a) for a in args]
    for (split, path), result in zip(jobs, results):
        report.problems += [f"{split}/{p}" for p in result.problems]
        expected = sizes_by_split[split].get(path.name)
        if expected is not None and expected != len(result.keys):
            report.problems.append(f"{split}/{path.name}: {len(result.keys)} samples, {schema.SIZES_FILE} says "
                                   f"{expected}")
        keys_by_split.setdefault(split, []).extend(result.keys)
        info = report.splits.setdefault(split, {"shards": 0, "samples": 0, "bytes": 0})
        info["shards"] += 1
        info["samples"] += len(result.keys)
        info["bytes"] += path.stat().st_size
    _check_keys(keys_by_split, report)
    _check_catalog(directory, keys_by_split, report)
    return report


def _read_sizes(split_dir: Path, report: CheckReport) -> dict[str, int]:
    path = split_dir / schema.SIZES_FILE
    if not path.is_file():
        report.problems.append(f"{split_dir.name}/{schema.SIZES_FILE}: missing")
        return {}
    try:
        sizes = json.loads(path.read_text())
        if not isinstance(sizes, dict) or not all(isinstance(v, int) for v in sizes.values()):
            raise ValueError("expected {shard name: sample count}")
        return sizes
    except ValueError as err:
        report.problems.append(f"{split_dir.name}/{schema.SIZES_FILE}: unreadable ({err})")
        return {}


def _check_keys(keys_by_split: dict[str, list[str]], report: CheckReport) -> None:
    for split, keys in keys_by_split.items():
        repeated = [k for k, n in Counter(keys).items() if n > 1]
        if repeated:
            report.problems.append(f"{split}: {len(repeated)} sample key(s) appear more than once (e.g. {repeated[0]})")
    train, val, small = (set(keys_by_split.get(s, ())) for s in ("train", "val", "train_small"))
    if train & val:
        report.problems.append(f"val and train share {len(train & val)} sample(s)")
    if small - train and train:
        report.problems.append(f"train_small has {len(small - train)} sample(s) that are not in train")


def _check_catalog(directory: Path, keys_by_split: dict[str, list[str]], report: CheckReport) -> None:
    parquet, csv = directory / schema.CATALOG_PARQUET, directory / schema.CATALOG_CSV
    if not parquet.is_file() and not csv.is_file():
        return
    import pandas as pd

    try:
        catalog = pd.read_parquet(parquet) if parquet.is_file() else pd.read_csv(csv, dtype=str)
    except (OSError, ValueError) as err:
        report.problems.append(f"catalog unreadable ({err})")
        return
    missing = [c for c in schema.CATALOG_COLUMNS if c not in catalog.columns]
    if missing:
        report.problems.append(f"catalog lacks columns: {', '.join(missing)}")
        return
    for split, keys in keys_by_split.items():
        listed = set(catalog.loc[catalog["split"] == split, "id"])
        stored = set(keys)
        if listed != stored:
            report.problems.append(f"{split}: catalog and shards disagree ({len(stored - listed)} sample(s) not in "
                                   f"the catalog, {len(listed - stored)} catalog row(s) without a sample)")
