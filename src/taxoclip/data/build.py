"""`taxoclip data build`: sources -> names -> downloads -> fingerprints -> dedup -> splits -> shards.

The build has two phases, both resumable:

1. **Plan** (mostly in this process): enumerate the sources, resolve names, drop excluded
   species, download URL sources (into the download cache), fingerprint every image in worker
   processes (results saved in batches to a ledger under `OUT/.build/fingerprints/`), remove
   duplicates and excluded images, assign splits and cut each split into parts. The plan is saved
   as `OUT/.build/plan.parquet`; once it exists a rerun never re-plans.
2. **Write** (worker processes): each part becomes one or more tars in a private folder renamed
   into place when complete (`shards.write_part`); then each split's tars are moved into
   `OUT/<split>/` under a journal, sizes.json, the catalog and the reports are written, and
   `OUT/build.json` marks the build complete. `OUT/.build/` is then removed.

Killed at any point, the same command continues: finished parts are kept, half-written ones
are redone, and the result is the same set of samples, in the same shards, as an uninterrupted
build of the same config.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import TaxoclipError
from ..taxonomy.taxon import RANKS
from . import schema
from .config import BuildConfig, load_config
from .dedup import ExcludedImages, exclusion_inputs, find_duplicates, fingerprint_records
from .download import Downloader, cache_path, clean_partial_downloads
from .files import read_json, write_json_atomic, write_table_atomic
from .shards import clean_temporary_parts, done_parts, finalize_split, write_catalog, write_part
from .sources import enumerate_sources, is_url
from .splits import assign_splits, part_size, shard_order
from .taxa import excluded_by_taxon, exclusion_keys, read_name_list, resolve_records
from .workers import pool

PLAN_COLUMNS: tuple[str, ...] = (
    "id", "split", "part", "source", "source_id", "location", "offset", "length", "source_location", *RANKS,
    "common_name",
    "license", "rights_holder", "source_url", "sha256", "raw_name", "name_status",
)
REMOVED_COLUMNS: tuple[str, ...] = ("id", "source", "source_id", "raw_name", "reason", "detail", "distance")
FAILURE_COLUMNS: tuple[str, ...] = ("id", "source", "source_id", "raw_name", "location", "stage", "error")
FINGERPRINT_BATCH = 20_000
FINGERPRINT_CHUNK = 64


@dataclass
class BuildResult:
    """What a build produced: counts per split, removals by reason, where the files are."""

    output: Path
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    records: int = 0
    seconds: float = 0.0
    already_complete: bool = False

    @property
    def samples(self) -> int:
        return sum(split["samples"] for split in self.splits.values())


class _Log:
    def __init__(self, show: bool):
        self.show = show

    def __call__(self, message: str) -> None:
        if self.show:
            print(f"data build: {message}", file=sys.stderr, flush=True)


class _Lock:
    """An exclusive lock on OUT/.build.lock for the life of a build (released if the process dies)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.handle = open(self.path, "w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise TaxoclipError(f"another build is writing {self.path.parent} (lock {self.path})") from None
        return self

    def __exit__(self, *exc):
        if exc[0] is None and (self.path.parent / schema.BUILD_RECORD).is_file():
            self.path.unlink(missing_ok=True)  # a finished build leaves no lock file behind
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


# -- entry point ----------------------------------------------------------------------------------

STAGES: tuple[str, ...] = ("all", "plan", "write")
"""`all`: everything (the default); `plan`: phase 1 only; `write`: this machine's share of the parts
of an existing plan (`machines`, `machine_index`), for builds spread over machines that share OUT."""


def build(config: BuildConfig | str | os.PathLike, workers: int | None = None, force: bool = False,
          progress: bool = True, stage: str = "all", machines: int = 1, machine_index: int = 0) -> BuildResult:
    """Build (or finish building) the dataset a config describes; see the module docstring."""
    if not isinstance(config, BuildConfig):
        config = load_config(config)
    if stage not in STAGES:
        raise TaxoclipError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if not (machines >= 1 and 0 <= machine_index < machines):
        raise TaxoclipError(f"machine index {machine_index} is not in 0..{machines - 1}")
    if machines > 1 and stage != "write":
        raise TaxoclipError("--machines splits the write stage only: use it with --stage write")
    out = config.output
    workers = workers or config.workers or os.cpu_count() or 1
    log = _Log(progress)
    state = out / schema.STATE_DIR
    if stage == "write":
        return _write_share(config, state, workers, progress, log, machines, machine_index)
    out.mkdir(parents=True, exist_ok=True)
    with _Lock(out / schema.LOCK_FILE):
        if force:
            clear_output(out)
        record_path = out / schema.BUILD_RECORD
        if record_path.is_file():
            record = read_json(record_path)
            if record.get("fingerprint") != config.fingerprint():
                raise TaxoclipError(f"{out} holds a dataset built from another config; use --force to rebuild it")
            shutil.rmtree(state, ignore_errors=True)  # left by a run killed while cleaning up
            log(f"{out} is already complete ({sum(s['samples'] for s in record['splits'].values())} samples)")
            return BuildResult(out, record["splits"], record["removed"], record["records"], 0.0,
                               already_complete=True)
        if not state.is_dir() and _has_dataset_files(out):
            raise TaxoclipError(f"{out} already holds dataset files that no build here is finishing; "
                                "use --force to replace them or choose another output")
        state.mkdir(parents=True, exist_ok=True)
        with _reported_errors(out):
            return _build_locked(config, state, workers, progress, log, stage)


@contextmanager
def _reported_errors(out: Path):
    """System trouble as one line that says the build can be resumed."""
    try:
        yield
    except BrokenProcessPool:
        raise TaxoclipError("a worker process died (out of memory?); run the same command again to resume") from None
    except OSError as err:
        raise TaxoclipError(f"{err.strerror or err} ({err.filename or out}); fix it and run the same command "
                            "again to resume") from None


def clear_output(out: Path) -> None:
    """Remove what a build writes (splits, catalog, reports, state, build.json), nothing else."""
    for name in (*schema.SPLITS, schema.REPORTS_DIR, schema.STATE_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (schema.CATALOG_CSV, schema.CATALOG_PARQUET, schema.BUILD_RECORD):
        (out / name).unlink(missing_ok=True)


def _has_dataset_files(out: Path) -> bool:
    return any((out / name).exists() for name in (*schema.SPLITS, schema.CATALOG_CSV, schema.CATALOG_PARQUET))


def _check_state(config: BuildConfig, state: Path, log: _Log) -> None:
    """Refuse to continue another config's unfinished build; remember this config's fingerprint."""
    config_path = state / "config.json"
    if config_path.is_file():
        if read_json(config_path).get("fingerprint") != config.fingerprint():
            raise TaxoclipError(f"{config.output} holds an unfinished build of another config; rerun that config, "
                                "or use --force to start over with this one")
        log(f"resuming the unfinished build in {config.output}")
    else:
        write_json_atomic(config_path, {"fingerprint": config.fingerprint(), "config": _config_dict(config)})


def _build_locked(config: BuildConfig, state: Path, workers: int, progress: bool, log: _Log,
                  stage: str) -> BuildResult:
    started = time.time()
    _check_state(config, state, log)
    clean_temporary_parts(state / "parts")
    plan_path = state / "plan.parquet"
    with pool(workers) as workers_pool:
        if not plan_path.is_file():
            _make_plan(config, state, workers_pool, progress, log)
        meta = read_json(state / "plan.json")
        if stage == "plan":
            log("plan ready; now run `--stage write` on each machine, then the plain command once to finish")
            return BuildResult(config.output, records=int(meta["records"]), seconds=time.time() - started)
        plan = pd.read_parquet(plan_path)
        _write_parts(config, state, plan, meta, workers_pool, progress, log)
    return _finish(config, state, plan, meta, started, workers, log)


def _write_share(config: BuildConfig, state: Path, workers: int, progress: bool, log: _Log, machines: int,
                 machine_index: int) -> BuildResult:
    """One machine's share of the parts of a planned build (no lock: parts are claimed by atomic
    rename, so machines, and a plain build finishing the job, can overlap safely)."""
    started = time.time()
    if not (state / "plan.parquet").is_file():
        raise TaxoclipError(f"{config.output} has no plan yet: run `taxoclip data build CONFIG --stage plan` first")
    _check_state(config, state, log)
    clean_temporary_parts(state / "parts")
    meta = read_json(state / "plan.json")
    plan = pd.read_parquet(state / "plan.parquet")
    with _reported_errors(config.output), pool(workers) as workers_pool:
        _write_parts(config, state, plan, meta, workers_pool, progress, log, machines, machine_index)
    log(f"machine {machine_index + 1} of {machines}: its parts are written; run the plain command once all "
        "machines are done")
    return BuildResult(config.output, records=int(meta["records"]), seconds=time.time() - started)


def _config_dict(config: BuildConfig) -> dict[str, Any]:
    return _jsonable({k: v for k, v in asdict(config).items() if k != "origin"})


# -- phase 1: the plan ----------------------------------------------------------------------------

def _removed(records: pd.DataFrame, reason: Any, detail: Any = "", distance: Any = 0) -> pd.DataFrame:
    """Rows of reports/removed.csv; `reason`, `detail` and `distance` are scalars or per-row arrays."""
    frame = records[["id", "source", "source_id", "raw_name"]].copy()
    frame["reason"] = reason
    frame["detail"] = detail if isinstance(detail, str) else np.asarray(detail)
    frame["distance"] = distance if np.isscalar(distance) else np.asarray(distance)
    return frame[list(REMOVED_COLUMNS)]


def _make_plan(config: BuildConfig, state: Path, workers_pool, progress: bool, log: _Log) -> None:
    reports = config.output / schema.REPORTS_DIR
    records = enumerate_sources(config)
    counts = records.groupby("source", sort=False).size()
    log(f"{len(records)} images in {len(counts)} source(s): " + ", ".join(f"{k} {v}" for k, v in counts.items()))

    taxa, names = resolve_records(records, config.taxonomy)
    write_table_atomic(reports / "names.csv", names)
    rejected = names[~names["accepted"]]
    write_table_atomic(reports / "unresolved_names.csv", rejected)
    records = pd.concat([records.drop(columns=["common_name"]), taxa], axis=1)
    accepted = records["name_status"].isin(config.taxonomy.accept)
    log(f"names: {names['raw_name'].nunique()} distinct, {len(rejected)} unresolved or ambiguous "
        f"({int((~accepted).sum())} images; see {reports / 'unresolved_names.csv'})")
    removed = [_removed(records[~accepted], "unresolved_name",
                        records.loc[~accepted, "name_status"] + ": " + records.loc[~accepted, "name_note"])]

    excluded_names = list(config.exclude.species)
    for path in config.exclude.species_files:
        excluded_names += read_name_list(path)
    keys = exclusion_keys(excluded_names, config.taxonomy.synonyms)
    excluded = accepted & excluded_by_taxon(records["raw_name"], records, keys)
    removed.append(_removed(records[excluded], "excluded_species", records.loc[excluded, "species"]))
    if keys:
        log(f"species exclusion: {len(keys)} keys, {int(excluded.sum())} images removed")
    candidates = records[accepted & ~excluded].copy()
    candidates["source_location"] = candidates["location"]

    failures: list[pd.DataFrame] = []
    candidates, download_failures = _download(config, candidates, progress, log)
    failures.append(download_failures)
    prints = _fingerprints(candidates, state, workers_pool, progress, log)
    candidates = candidates.merge(prints, on="id", how="left", validate="one_to_one")
    broken = candidates["error"].fillna("missing fingerprint") != ""
    failures.append(_failures(candidates[broken], "read", candidates.loc[broken, "error"]))
    candidates = candidates[~broken]

    image_files, excluded_images = exclusion_inputs(config.exclude.images)
    _fingerprint_exclusions(image_files, excluded_images, state, workers_pool, progress)
    duplicates = find_duplicates(candidates["id"].tolist(), candidates["sha256"].tolist(),
                                 candidates["phash"].tolist(), config.dedup, excluded_images)
    dup_rows = candidates.set_index("id").loc[duplicates["id"]].reset_index()
    removed.append(_removed(dup_rows, duplicates["reason"].to_numpy(), duplicates["duplicate_of"],
                            duplicates["distance"].to_numpy()))
    kept = candidates[~candidates["id"].isin(duplicates["id"])].reset_index(drop=True)
    by_reason = duplicates["reason"].value_counts().to_dict()
    log("dedup: " + (", ".join(f"{v} {k.replace('_', ' ')}" for k, v in by_reason.items()) or "no duplicates"))

    plan = _plan_splits(config, kept)
    write_table_atomic(state / "removed-plan.parquet", pd.concat(removed, ignore_index=True))
    write_table_atomic(state / "failures-plan.parquet", pd.concat(failures, ignore_index=True))
    parts = plan.groupby("split")["part"].max().add(1).to_dict()
    write_json_atomic(state / "plan.json", {"records": len(records), "parts": {k: int(v) for k, v in parts.items()}})
    write_table_atomic(state / "plan.parquet", plan)
    sizes = plan["split"].value_counts().to_dict()
    log("plan: " + ", ".join(f"{split} {sizes.get(split, 0)}" for split in schema.SPLITS))


def _failures(records: pd.DataFrame, stage: str, error: pd.Series) -> pd.DataFrame:
    """Rows of reports/failures.csv; `location` is where the image came from (the URL, not the cache)."""
    frame = records[["id", "source", "source_id", "raw_name", "source_location"]].rename(
        columns={"source_location": "location"})
    frame["stage"] = stage
    frame["error"] = error.to_numpy()
    return frame[list(FAILURE_COLUMNS)]


def _download(config: BuildConfig, candidates: pd.DataFrame, progress: bool, log: _Log,
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fetch URL records into the download cache; their `location` becomes the cached file."""
    remote = candidates["location"].map(is_url)
    empty = pd.DataFrame(columns=list(FAILURE_COLUMNS))
    if not remote.any():
        return candidates, empty
    from tqdm import tqdm

    cache_dir = config.download_dir
    clean_partial_downloads(cache_dir)
    downloader = Downloader(config.download, cache_dir)
    urls = pd.unique(candidates.loc[remote, "location"])
    todo = [u for u in urls if downloader.cached(u) is None]
    log(f"downloads: {len(urls)} URLs, {len(urls) - len(todo)} already cached in {cache_dir}")
    with tqdm(total=len(todo), desc="download", unit="img", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        _, failed = downloader.fetch_all(todo, on_done=lambda url, path: bar.update())
    errors = {f.url: f"{f.error} (after {f.attempts} attempt{'s' * (f.attempts > 1)})" for f in failed}
    bad = remote & candidates["location"].isin(errors)
    failures = _failures(candidates[bad], "download", candidates.loc[bad, "location"].map(errors))
    candidates = candidates[~bad].copy()
    still_remote = candidates["location"].map(is_url)
    candidates.loc[still_remote, "location"] = [str(cache_path(cache_dir, u))
                                                for u in candidates.loc[still_remote, "location"]]
    if failed:
        log(f"downloads: {len(failed)} failed (see reports/failures.csv)")
    return candidates, failures


def _read_ledger(ledger: Path) -> pd.DataFrame:
    files = sorted(ledger.glob("*.parquet"))
    columns = ["id", "sha256", "phash", "width", "height", "error"]
    if not files:
        return pd.DataFrame(columns=columns)
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).drop_duplicates("id")[columns]


def _fingerprint_rows(todo: list[tuple[str, str, int, int]], ledger: Path, workers_pool, progress: bool,
                      description: str) -> None:
    """Fingerprint records in the worker pool, saving results to the ledger in batches."""
    ledger.mkdir(parents=True, exist_ok=True)
    chunks = (todo[i:i + FINGERPRINT_CHUNK] for i in range(0, len(todo), FINGERPRINT_CHUNK))
    batch: list[tuple] = []
    serial = len(list(ledger.glob("*.parquet")))

    def flush() -> None:
        nonlocal serial, batch
        if batch:
            frame = pd.DataFrame(batch, columns=["id", "sha256", "phash", "width", "height", "error"])
            frame["phash"] = frame["phash"].astype("uint64")
            write_table_atomic(ledger / f"{serial:06d}-{os.getpid()}.parquet", frame)
            serial += 1
            batch = []

    for result in workers_pool.run(fingerprint_records, chunks, len(todo), description, progress):
        batch.extend(result)
        if len(batch) >= FINGERPRINT_BATCH:
            flush()
    flush()


def _fingerprints(candidates: pd.DataFrame, state: Path, workers_pool, progress: bool, log: _Log) -> pd.DataFrame:
    ledger = state / "fingerprints"
    known = _read_ledger(ledger)
    todo_rows = candidates[~candidates["id"].isin(known["id"])]
    if len(known):
        log(f"fingerprints: {len(candidates) - len(todo_rows)} from an earlier run, {len(todo_rows)} to do")
    todo = list(zip(todo_rows["id"], todo_rows["location"], todo_rows["offset"].astype(int),
                    todo_rows["length"].astype(int)))
    if todo:
        _fingerprint_rows(todo, ledger, workers_pool, progress, "fingerprint")
    prints = _read_ledger(ledger)
    return prints[prints["id"].isin(candidates["id"])]


def _fingerprint_exclusions(files: list[Path], excluded: ExcludedImages, state: Path, workers_pool,
                            progress: bool) -> None:
    if not files:
        return
    ledger = state / "fingerprints-excluded"
    ids = [f"exclude:{path}" for path in files]
    known = _read_ledger(ledger)
    done = set(known["id"])
    todo = [(i, str(p), -1, -1) for i, p in zip(ids, files) if i not in done]
    if todo:
        _fingerprint_rows(todo, ledger, workers_pool, progress, "fingerprint exclusions")
    prints = _read_ledger(ledger).set_index("id")
    for record_id, path in zip(ids, files):
        row = prints.loc[record_id]
        if row["error"]:
            raise TaxoclipError(f"cannot read excluded image {path}: {row['error']}")
        excluded.sha256.setdefault(row["sha256"], str(path))
        excluded.phash.append((int(row["phash"]), str(path)))


def _plan_splits(config: BuildConfig, kept: pd.DataFrame) -> pd.DataFrame:
    """Split assignment, shard order and parts; one row per (split, sample)."""
    val = {s.name: config.splits.val_fraction if s.val_fraction is None else s.val_fraction for s in config.sources}
    small = {s.name: config.splits.train_small_fraction if s.train_small_fraction is None else s.train_small_fraction
             for s in config.sources}
    split, train_small = assign_splits(kept, config.splits.seed, val, small)
    # `_order`, not `order`: that name is a rank column
    kept = kept.assign(split=split.to_numpy(), _order=shard_order(kept["id"].tolist(), config.splits.seed))
    tables = [kept, kept[train_small.to_numpy()].assign(split="train_small")]
    plan = pd.concat(tables, ignore_index=True)
    plan["split"] = pd.Categorical(plan["split"], categories=list(schema.SPLITS), ordered=True)
    plan = plan.sort_values(["split", "_order", "id"], kind="stable").reset_index(drop=True)
    plan["split"] = plan["split"].astype(str)
    position = plan.groupby("split").cumcount()
    sizes = plan["split"].map(plan["split"].value_counts())
    per_part = [part_size(int(n), config.shards.max_samples) for n in sizes]
    plan["part"] = (position // np.asarray(per_part, dtype=np.int64)).astype("int64")
    plan["sha256"] = plan["sha256"].astype(str)
    return plan[[*PLAN_COLUMNS]]


# -- phase 2: shards ------------------------------------------------------------------------------

def _write_parts(config: BuildConfig, state: Path, plan: pd.DataFrame, meta: dict, workers_pool, progress: bool,
                 log: _Log, machines: int = 1, machine_index: int = 0) -> None:
    """Write the parts not written yet (those numbered machine_index modulo machines)."""
    parts_root = state / "parts"
    done = {split: set(done_parts(parts_root, split)) for split in meta["parts"]}
    groups = plan.groupby(["split", "part"], sort=False).indices  # (split, part) -> row positions
    todo = [key for number, key in enumerate((split, part) for split in meta["parts"]
                                             for part in range(meta["parts"][split]))
            if key[1] not in done[key[0]] and number % machines == machine_index]
    if not todo:
        return
    already = sum(len(d) for d in done.values())
    if already:
        log(f"write: {already} part(s) already written, {len(todo)} to go")
    sample_columns = ["id", "location", "offset", "length", *RANKS, "common_name"]

    def tasks():  # built one at a time as workers free up: a 10M-row plan never sits in dicts at once
        for split, part in todo:
            samples = plan.iloc[groups[(split, part)]][sample_columns].to_dict("records")
            yield {"split": split, "index": part, "parts_root": str(parts_root), "samples": samples,
                   "image": asdict(config.image), "max_samples": config.shards.max_samples,
                   "max_bytes": config.shards.max_bytes}

    total = sum(len(groups[key]) for key in todo)
    for _ in workers_pool.run(write_part, tasks(), total, "write shards", progress):
        pass


def _finish(config: BuildConfig, state: Path, plan: pd.DataFrame, meta: dict, started: float, workers: int,
            log: _Log) -> BuildResult:
    out = config.output
    splits: dict[str, dict[str, int]] = {}
    write_failures = []
    placed = []  # (split, id, shard) of every written sample, in shard order
    cpu_seconds = 0.0
    for split, part_count in meta["parts"].items():
        for record in done_parts(state / "parts", split).values():
            write_failures += record["failures"]
            cpu_seconds += record.get("cpu_seconds", 0.0)
        journal = finalize_split(out, state, split, part_count)
        for shard in journal["shards"]:
            placed.append(pd.DataFrame({"split": split, "id": shard["ids"], "shard": f"{split}/{shard['name']}"}))
        splits[split] = {"samples": sum(s["count"] for s in journal["shards"]), "shards": len(journal["shards"]),
                         "bytes": sum(s["bytes"] for s in journal["shards"])}

    written = pd.concat(placed, ignore_index=True) if placed else pd.DataFrame(columns=["split", "id", "shard"])
    written["_split"] = pd.Categorical(written["split"], categories=list(schema.SPLITS), ordered=True)
    written = written.sort_values("_split", kind="stable").drop(columns="_split")
    catalog = written.merge(plan, on=["split", "id"], how="left", validate="one_to_one")
    catalog = catalog[[*schema.CATALOG_COLUMNS, *schema.CATALOG_EXTRA_COLUMNS]]
    write_catalog(out, catalog)

    failures = pd.read_parquet(state / "failures-plan.parquet")
    failed_writes = {f["id"]: f["error"] for f in write_failures}
    lost = plan[plan["id"].isin(failed_writes.keys()) & ~plan["id"].isin(set(catalog["id"]))].drop_duplicates("id")
    if len(lost):
        failures = pd.concat([failures, _failures(lost, "write", lost["id"].map(failed_writes))], ignore_index=True)
    removed = pd.concat([pd.read_parquet(state / "removed-plan.parquet"),
                         _removed(failures, "failed", failures["stage"] + ": " + failures["error"])],
                        ignore_index=True)
    reports = out / schema.REPORTS_DIR
    write_table_atomic(reports / "removed.csv", removed)
    write_table_atomic(reports / "failures.csv", failures)
    by_reason = {reason: int(n) for reason, n in removed["reason"].value_counts().items()}
    record = {
        "fingerprint": config.fingerprint(), "taxoclip_version": __version__, "config": _config_dict(config),
        "records": int(meta["records"]), "splits": splits, "removed": by_reason,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds_last_run": round(time.time() - started, 1),
        "write_cpu_seconds": round(cpu_seconds, 1),
        "write_images_per_cpu_second": round(len(catalog) / cpu_seconds, 1) if cpu_seconds else None,
        "workers": workers,
    }
    write_json_atomic(out / schema.BUILD_RECORD, _jsonable(record))
    shutil.rmtree(state, ignore_errors=True)
    summary = ", ".join(f"{split} {info['samples']} in {info['shards']} shard(s)" for split, info in splits.items())
    log(f"done in {time.time() - started:.1f} s: {summary}; removed "
        + (", ".join(f"{n} {r.replace('_', ' ')}" for r, n in by_reason.items()) or "nothing"))
    return BuildResult(out, splits, by_reason, int(meta["records"]), time.time() - started)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value

