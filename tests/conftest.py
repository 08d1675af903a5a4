"""Shared fixtures: the real photos beside the repo, and stand-in checkpoints in official layouts."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_photos_dir() -> Path:
    """../shared/data/nature-quizzer-train (or TAXOCLIP_SHARED_PHOTOS)."""
    return Path(os.environ.get("TAXOCLIP_SHARED_PHOTOS", REPO.parent / "shared" / "data" / "nature-quizzer-train"))


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    path = shared_photos_dir()
    if not (path / "labels.csv").is_file():
        pytest.fail(f"the shared photos are missing: {path} (CI runs with ../shared beside the clone)")
    return path


@pytest.fixture(scope="session")
def labels(photos_dir) -> pd.DataFrame:
    """labels.csv of the shared photos, with an absolute `path` column."""
    table = pd.read_csv(photos_dir / "labels.csv", dtype=str).fillna("")
    table["path"] = [str(photos_dir / p) for p in table["filepath"]]
    return table


@pytest.fixture(scope="session")
def standin_dir(tmp_path_factory, photos_dir) -> Path:
    """A tiny random open_clip model in the hub layout, with a real-taxa tree-of-life bank
    (the 492 species of the shared photos) in `embeddings/`."""
    from taxoclip.models.standin import make_standin, standin_tol_taxa

    directory = tmp_path_factory.mktemp("standin") / "bioclip-standin"
    return make_standin(directory, taxa=standin_tol_taxa(photos_dir / "labels.csv"))


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory, standin_dir) -> Path:
    """A Hugging Face cache holding the stand-in exactly as the official repos are laid out:
    `imageomics/bioclip` (config + weights) and the dataset `imageomics/TreeOfLife-10M`
    (`embeddings/txt_emb_species.{npy,json}`); the same for bioclip-2 / TreeOfLife-200M."""
    import shutil

    from taxoclip.models import layout
    from taxoclip.models.standin import install_in_hub_cache

    cache = tmp_path_factory.mktemp("hf") / "hub"
    model_only = tmp_path_factory.mktemp("model-only")
    for name in (layout.CONFIG_FILE, layout.WEIGHTS_SAFETENSORS):
        shutil.copy(standin_dir / name, model_only / name)
    bank_only = tmp_path_factory.mktemp("bank-only")
    shutil.copytree(standin_dir / layout.TOL_DIR, bank_only / layout.TOL_DIR)
    for model_repo, bank_repo in (("imageomics/bioclip", "imageomics/TreeOfLife-10M"),
                                  ("imageomics/bioclip-2", "imageomics/TreeOfLife-200M")):
        install_in_hub_cache(model_only, model_repo, cache)
        install_in_hub_cache(bank_only, bank_repo, cache, repo_type="dataset")
    return cache


@pytest.fixture()
def offline_hub(hub_cache, monkeypatch) -> Path:
    """Point the hub client at the stand-in cache, offline, for one test."""
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """taxoclip's own cache (banks, text embeddings) in a temporary directory per session."""
    monkeypatch.setenv("TAXOCLIP_CACHE", str(tmp_path_factory.getbasetemp() / "taxoclip-cache"))
