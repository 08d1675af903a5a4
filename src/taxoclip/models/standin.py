"""Stand-in checkpoints: tiny (or full-size, random) open_clip models in the official layouts.

Tests and benchmarks use these instead of the real BioCLIP files, which cannot be fetched
here, and load them through the same code paths as the real ones: a hub-layout directory,
a Hugging Face cache entry, or a bare weights file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..taxonomy.taxon import Taxon
from ..taxonomy.text import tol_text
from . import layout

TINY_MODEL_CFG: dict = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
"""About 1.7M parameters (7 MB): the shape of BioCLIP's config, shrunk."""

OPENAI_PREPROCESS_CFG: dict = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
}
"""BioCLIP's `preprocess_cfg` (OpenAI CLIP statistics)."""


def standin_model_cfg(arch: str = "tiny") -> dict:
    """`tiny`, or the config of any open_clip architecture (e.g. `ViT-B-16`, random weights)."""
    if arch == "tiny":
        return json.loads(json.dumps(TINY_MODEL_CFG))
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"unknown open_clip architecture {arch!r}")
    return json.loads(json.dumps(cfg))


def make_standin(directory: str | os.PathLike, arch: str = "tiny", seed: int = 0,
                 taxa: list[Taxon] | None = None, random_bank_size: int = 0,
                 weights_format: str = "safetensors", templates: str = "openai") -> Path:
    """Write a randomly initialised model in the hub layout, optionally with a tree-of-life bank.

    With `taxa`, the bank holds their real 80-template text embeddings (as the official files
    do); with `random_bank_size`, random unit columns for that many synthetic taxa (for speed
    benchmarks with a realistically sized bank).
    """
    import open_clip
    import torch

    from .encode import class_embeddings
    from .tol import write_tol

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_cfg = standin_model_cfg(arch)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg)
    model.eval()
    config = {"model_cfg": model_cfg, "preprocess_cfg": OPENAI_PREPROCESS_CFG}
    (directory / layout.CONFIG_FILE).write_text(json.dumps(config, indent=2))
    if weights_format == "safetensors":
        from safetensors.torch import save_model

        save_model(model, str(directory / layout.WEIGHTS_SAFETENSORS))
    else:
        torch.save(model.state_dict(), directory / layout.WEIGHTS_BIN)
    if taxa:
        tokenizer = open_clip.get_tokenizer(f"local-dir:{directory}")
        emb = class_embeddings(model, tokenizer, [tol_text(t) for t in taxa], templates=templates)
        write_tol(directory, emb.numpy().T, taxa)
    elif random_bank_size:
        write_tol(directory, random_bank(model_cfg["embed_dim"], random_bank_size, seed), synthetic_taxa(random_bank_size))
    return directory


def random_bank(dim: int, size: int, seed: int = 0) -> np.ndarray:
    """Random unit columns, float32 [dim, size]."""
    rng = np.random.default_rng(seed)
    bank = rng.standard_normal((dim, size), dtype=np.float32)
    bank /= np.linalg.norm(bank, axis=0, keepdims=True)
    return bank


def synthetic_taxa(size: int) -> list[Taxon]:
    """`size` distinct taxa in a balanced made-up tree (for benchmarks only)."""
    taxa = []
    for i in range(size):
        taxa.append(Taxon(f"Kingdom{i % 3}", f"Phylum{i % 17}", f"Class{i % 61}", f"Order{i % 251}",
                          f"Family{i % 1009}", f"Genus{i % 20011}", f"sp{i}"))
    return taxa


def install_in_hub_cache(source: str | os.PathLike, repo: str, cache_dir: str | os.PathLike,
                         repo_type: str = "model", revision_name: str = "main") -> str:
    """Lay `source`'s files out as a Hugging Face cache entry of `repo` (blobs, snapshot, ref).

    Returns the (made-up, content-derived) commit hash. Blobs are named by their sha256, as the
    hub does for LFS files, so the loader's identity code sees what it sees for real downloads.
    """
    source, cache_dir = Path(source), Path(cache_dir)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    commit = hashlib.sha1("".join(f"{p.relative_to(source)}{d}" for p, d in digests.items()).encode()).hexdigest()
    prefix = {"model": "models", "dataset": "datasets", "space": "spaces"}[repo_type]
    root = cache_dir / f"{prefix}--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    snapshot = root / "snapshots" / commit
    for path, digest in digests.items():
        blob = root / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(path, blob)
        target = snapshot / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        os.symlink(os.path.relpath(blob, target.parent), target)
    (root / "refs" / revision_name).write_text(commit)
    return commit


def standin_tol_taxa(labels_csv: str | os.PathLike, limit: int | None = None) -> list[Taxon]:
    """Distinct real taxa (7 ranks + common name) from a labels table such as the shared photos'."""
    import pandas as pd

    table = pd.read_csv(labels_csv, dtype=str).fillna("")
    seen: dict[tuple, Taxon] = {}
    for row in table.to_dict("records"):
        taxon = Taxon.from_ranks(row, common=row.get("common_name", ""))
        seen.setdefault(taxon.ranks, taxon)
    taxa = list(seen.values())
    return taxa[:limit] if limit else taxa
