"""Named models: what `--model bioclip` and friends stand for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NamedModel:
    """An alias for a hub repo and, for open-ended prediction, the dataset repo of its bank."""

    repo: str
    tol_repo: str | None = None
    revision: str = "main"
    tol_revision: str = "main"
    description: str = ""


NAMED_MODELS: dict[str, NamedModel] = {
    "bioclip": NamedModel(
        repo="imageomics/bioclip",
        tol_repo="imageomics/TreeOfLife-10M",
        description="BioCLIP (CVPR 2024), ViT-B/16, 512-d; bank: TreeOfLife-10M (~450K taxa)",
    ),
    "bioclip-2": NamedModel(
        repo="imageomics/bioclip-2",
        tol_repo="imageomics/TreeOfLife-200M",
        description="BioCLIP 2 (2025), ViT-L/14, 768-d; bank: TreeOfLife-200M (~867K taxa)",
    ),
    "bioclip-inat-only": NamedModel(
        repo="imageomics/bioclip-vit-b-16-inat-only",
        description="BioCLIP iNat21-only baseline, ViT-B/16 (no tree-of-life bank)",
    ),
}
"""Alias -> hub repos. Append `@REVISION` to any alias or hf-hub spec to pin a commit."""

BUNDLED_MODELS: dict[str, str] = {"mini": "taxoclip.resources.mini"}
"""Aliases for checkpoints shipped inside the package (importable resource directories)."""
