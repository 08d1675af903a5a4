"""Writing webdataset shards: one part of a split per worker, then an atomic hand-over.

A *part* is a fixed, planned list of samples. A worker writes it with webdataset's `ShardWriter`
(limits: samples and bytes per shard) into a private temporary folder, flushes the tars to disk,
writes `done.json` (shard files, counts, ids, per-sample failures) and renames the folder into
place. A part folder therefore either exists complete or not at all; a killed worker leaves only
a temporary folder, which the next run deletes and redoes.

When every part of a split is done, `finalize_split` numbers the parts' tars in plan order as
`shard-000000.tar` ... and moves them into `OUT/<split>/`, following a journal written before
the first move, so an interruption during the moves is finished by the next run. `sizes.json`
is written last.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..taxonomy.taxon import RANKS, Taxon
from . import schema
from .files import fsync_dir, fsync_file, read_json, write_json_atomic, write_table_atomic
from .images import prepare_jpeg
from .sources import read_bytes
from .workers import tick

SHARD_MTIME = 0
"""Member mtime in every tar: shards are byte-for-byte reproducible from the same plan."""
PART_DONE = "done.json"

def sample_members(taxon: Taxon, jpg: bytes) -> dict[str, bytes]:
    """The 11 members of a sample: the image and the 10 texts of `schema.sample_texts`."""
    members = {schema.IMAGE_MEMBER: jpg}
    members.update({name: text.encode("utf-8") for name, text in schema.sample_texts(taxon).items()})
    return members


def sample_taxon(sample: Mapping[str, Any]) -> Taxon:
    return Taxon.from_ranks({rank: sample.get(rank, "") for rank in RANKS}, common=sample.get("common_name", ""))


def _shard_writer(pattern: str, max_samples: int, max_bytes: float):
    """webdataset's ShardWriter, writing ustar headers directly.

    For ASCII member names (ours are uuids) the bytes are identical to Python's default pax
    format, but tarfile skips its per-member pax checks: about 40% less time in tar writing."""
    import tarfile

    import webdataset as wds

    class UstarShardWriter(wds.ShardWriter):
        def next_stream(self):
            super().next_stream()
            self.tarstream.tarstream.format = tarfile.USTAR_FORMAT

    return UstarShardWriter(pattern, maxcount=max_samples, maxsize=max_bytes, verbose=0, encoder=False,
                            mtime=SHARD_MTIME)


def part_dir(parts_root: Path, split: str, index: int) -> Path:
    return parts_root / split / f"{index:05d}"


def write_part(task: dict[str, Any]) -> dict[str, Any]:
    """Write one planned part (worker entry point); returns its `done.json` record."""
    final = part_dir(Path(task["parts_root"]), task["split"], task["index"])
    if (final / PART_DONE).is_file():
        return read_json(final / PART_DONE)
    cpu_started = time.process_time()
    temporary = final.with_name(f"{final.name}.tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
    temporary.mkdir(parents=True)
    image = task["image"]
    shard_ids: dict[str, list[str]] = {}
    failures: list[dict[str, str]] = []
    writer = _shard_writer(str(temporary / "%06d.tar"), task["max_samples"], task["max_bytes"])
    try:
        for sample in task["samples"]:
            try:
                data = read_bytes(sample["location"], sample["offset"], sample["length"])
                jpg = prepare_jpeg(data, image["size"], image["resize"], image["jpeg_quality"],
                                   tuple(image["pad_color"]))
            except Exception as err:  # one bad image is a recorded failure, never a lost part
                failures.append({"id": sample["id"], "stage": "write", "error": f"{type(err).__name__}: {err}"})
                tick()
                continue
            writer.write({"__key__": sample["id"], **sample_members(sample_taxon(sample), jpg)})
            shard_ids.setdefault(Path(writer.fname).name, []).append(sample["id"])
            tick()
    finally:
        writer.close()
    shards = []
    for tar in sorted(temporary.glob("*.tar")):
        ids = shard_ids.get(tar.name)
        if not ids:
            tar.unlink()  # ShardWriter opens its first tar before any sample arrives
            continue
        fsync_file(tar)
        shards.append({"file": tar.name, "count": len(ids), "bytes": tar.stat().st_size, "ids": ids})
    record = {"split": task["split"], "index": task["index"], "shards": shards, "failures": failures,
              "cpu_seconds": round(time.process_time() - cpu_started, 3)}
    write_json_atomic(temporary / PART_DONE, record)
    fsync_dir(temporary)
    try:
        os.rename(temporary, final)
    except OSError:
        if not (final / PART_DONE).is_file():
            raise
        shutil.rmtree(temporary, ignore_errors=True)  # an orphaned worker of a killed run finished it first
    fsync_dir(final.parent)
    return record


def _writer_alive(temporary: Path) -> bool:
    """Whether the process writing a temporary part may still run: it is on another machine, or
    its process on this one still exists."""
    host_and_pid = temporary.name.partition(".tmp-")[2].rpartition("-")[0]  # drop the random token
    host, _, pid = host_and_pid.rpartition("-")
    if host != socket.gethostname():
        return True
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_temporary_parts(parts_root: Path) -> None:
    """Delete half-written parts left by dead writers on this machine (another machine's
    in-progress parts are left alone; the whole state folder goes when the build finishes)."""
    if parts_root.is_dir():
        for stale in parts_root.glob("*/*.tmp-*"):
            if not _writer_alive(stale):
                shutil.rmtree(stale, ignore_errors=True)


def done_parts(parts_root: Path, split: str) -> dict[int, dict[str, Any]]:
    """`{part index: done record}` of the finished parts of a split."""
    out = {}
    for marker in sorted((parts_root / split).glob(f"[0-9]*/{PART_DONE}")):
        if ".tmp-" not in marker.parent.name:
            out[int(marker.parent.name)] = read_json(marker)
    return out


def finalize_split(out_dir: Path, state_dir: Path, split: str, part_count: int) -> dict[str, Any]:
    """Move a split's part tars into `OUT/<split>/shard-NNNNNN.tar` and write sizes.json.

    Returns the journal: {"shards": [{"name", "count", "bytes", "ids"}]} in shard order."""
    parts_root = state_dir / "parts"
    journal_path = state_dir / f"finalize-{split}.json"
    split_dir = out_dir / split
    split_dir.mkdir(parents=True, exist_ok=True)
    if journal_path.is_file():
        journal = read_json(journal_path)
    else:
        parts = done_parts(parts_root, split)
        missing = [i for i in range(part_count) if i not in parts]
        if missing:
            raise RuntimeError(f"split {split}: parts {missing[:5]} are not written")
        shards = []
        for index in range(part_count):
            for shard in parts[index]["shards"]:
                shards.append({"name": schema.SHARD_NAME.format(index=len(shards)),
                               "from": str(part_dir(parts_root, split, index).relative_to(state_dir) / shard["file"]),
                               "count": shard["count"], "bytes": shard["bytes"], "ids": shard["ids"]})
        journal = {"split": split, "shards": shards}
        write_json_atomic(journal_path, journal)
    for shard in journal["shards"]:
        source = state_dir / shard["from"]
        if source.exists():
            os.replace(source, split_dir / shard["name"])
    fsync_dir(split_dir)
    write_json_atomic(split_dir / schema.SIZES_FILE, {s["name"]: s["count"] for s in journal["shards"]})
    return journal


def write_catalog(out_dir: Path, catalog: pd.DataFrame) -> None:
    """catalog.parquet and catalog.csv (same rows), atomically."""
    write_table_atomic(out_dir / schema.CATALOG_PARQUET, catalog)
    write_table_atomic(out_dir / schema.CATALOG_CSV, catalog)


def shard_paths(split_dir: Path) -> list[Path]:
    return sorted(split_dir.glob(schema.SHARD_GLOB))

