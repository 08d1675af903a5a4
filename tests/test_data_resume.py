"""A build killed with SIGKILL (a real subprocess) and started again ends exactly like an
uninterrupted one: the same samples, once each, in byte-identical shards."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from data_support import assert_shards_match_catalog, photo_subset, write_config

from taxoclip.data import schema
from taxoclip.data.build import build
from taxoclip.data.check import check_dataset
from taxoclip.errors import TaxoclipError

SRC = Path(__file__).resolve().parent.parent / "src"


def start_build(config: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.Popen([sys.executable, "-m", "taxoclip", "data", "build", str(config), "--workers", "1",
                             "--quiet"], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def kill_when(process: subprocess.Popen, ready, timeout: float = 150.0) -> None:
    """SIGKILL the build's whole process group as soon as `ready()` is true."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the build ended before it could be killed: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("the build never reached the point to kill it at")
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()


def shard_digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.glob("*/shard-*.tar"))}


@pytest.fixture(scope="module")
def config_for(tmp_path_factory, labels):
    """Configs that differ only in their output folder, and the uninterrupted reference build."""
    folder = tmp_path_factory.mktemp("resume")
    subset = photo_subset(labels)
    subset.drop(columns=["path"]).to_csv(folder / "photos.csv", index=False)
    photos_root = Path(subset["path"].iloc[0]).parent.parent

    def make(output: str) -> Path:
        return write_config(folder / f"{output}.yaml", {
            "output": output, "workers": 1,
            "sources": [{"name": "quiz", "kind": "manifest", "path": "photos.csv", "root": str(photos_root),
                         "path_column": "filepath", "name_column": "species_label"}],
            "shards": {"max_samples": 4},
            "splits": {"val_fraction": 0.15, "train_small_fraction": 0.3},
        })

    make.reference = build(make("reference"), progress=False)
    return make


def assert_same_dataset(out: Path, ref_out: Path) -> None:
    catalog = assert_shards_match_catalog(out)
    assert catalog.equals(pd.read_parquet(ref_out / schema.CATALOG_PARQUET))
    assert not catalog.duplicated(["split", "id"]).any()
    assert shard_digests(out) == shard_digests(ref_out)
    for split in set(catalog["split"]):
        assert (out / split / schema.SIZES_FILE).read_text() == (ref_out / split / schema.SIZES_FILE).read_text()
    assert check_dataset(out).ok


def test_killed_build_resumes_to_the_same_dataset(config_for):
    resumed_config = config_for("resumed")
    tmp_path = resumed_config.parent
    out = tmp_path / "resumed"
    state = out / schema.STATE_DIR
    # 1: killed while planning, before any shard exists
    kill_when(start_build(resumed_config), lambda: (state / "config.json").is_file())
    assert not (state / "plan.parquet").exists() and not (out / schema.BUILD_RECORD).exists()
    # 2: killed while writing shards, after the first part is complete
    kill_when(start_build(resumed_config), lambda: any(state.glob("parts/*/[0-9]*/done.json")))
    assert (state / "plan.parquet").is_file() and not (out / schema.BUILD_RECORD).exists()
    written_before = len(list(state.glob("parts/*/[0-9]*/done.json")))
    parts_total = sum(pd.read_parquet(state / "plan.parquet").groupby("split")["part"].nunique())
    assert 0 < written_before < parts_total
    interrupted = check_dataset(out)
    assert not interrupted.ok and "unfinished build" in interrupted.problems[0]
    # 3: started again, it finishes
    resumed = build(resumed_config, progress=False)
    assert not resumed.already_complete and not state.exists()

    reference = config_for.reference
    assert resumed.splits == reference.splits and resumed.removed == reference.removed
    assert_same_dataset(out, tmp_path / "reference")


def test_build_spread_over_machines(config_for):
    """plan once, `--stage write` per machine (here one after the other), then the plain command."""
    config = config_for("spread")
    out = config.parent / "spread"
    with pytest.raises(TaxoclipError, match="no plan yet"):
        build(config, stage="write", machines=2, machine_index=1, progress=False)
    build(config, stage="plan", progress=False)
    state = out / schema.STATE_DIR
    plan = pd.read_parquet(state / "plan.parquet")
    parts_total = int(plan.groupby("split")["part"].nunique().sum())
    build(config, stage="write", machines=3, machine_index=1, progress=False)
    assert len(list(state.glob("parts/*/[0-9]*/done.json"))) == len(range(1, parts_total, 3))
    build(config, stage="write", machines=3, machine_index=0, progress=False)
    assert not (out / schema.BUILD_RECORD).exists()
    finished = build(config, progress=False)  # writes machine 2's share itself, then finishes
    assert finished.splits == config_for.reference.splits
    assert_same_dataset(out, config.parent / "reference")


def test_image_lost_after_planning_is_a_recorded_failure(tmp_path, labels):
    """A source file that disappears between planning and writing costs that sample only."""
    tree = tmp_path / "tree"
    for path in photo_subset(labels, per_species=1)["path"].head(6):
        target = tree / "Corylus avellana" / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    config = write_config(tmp_path / "lost.yaml", {
        "output": "out", "workers": 1, "sources": [{"name": "tree", "kind": "folder", "path": "tree"}],
        "splits": {"val_fraction": 0.0, "train_small_fraction": 0.0}, "dedup": {"near": False}})
    build(config, stage="plan", progress=False)
    lost = sorted((tree / "Corylus avellana").iterdir())[2]
    lost.unlink()
    result = build(config, progress=False)
    out = tmp_path / "out"
    failures = pd.read_csv(out / "reports" / "failures.csv", keep_default_na=False)
    assert failures[["source_id", "stage"]].values.tolist() == [[f"Corylus avellana/{lost.name}", "write"]]
    assert "FileNotFoundError" in failures["error"].iloc[0]
    assert result.splits["train"]["samples"] == 5 and result.removed == {"failed": 1}
    catalog = assert_shards_match_catalog(out)
    assert lost.name not in " ".join(catalog["source_id"])
    assert check_dataset(out).ok
