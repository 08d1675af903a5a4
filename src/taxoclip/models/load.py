"""Loading any `--model` spec into an open_clip model, with a record of what was loaded.

`resolve_model` finds the files (no torch needed, offline-first); `load_model` builds the
model with open_clip from those files. Weights are read only as tensors: safetensors, or
`torch.load(weights_only=True)`; a checkpoint that needs code to unpickle is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MissingFilesError, TaxoclipError
from . import layout
from .hub import blob_sha256, first_hub_file, hub_file, snapshot_revision
from .registry import BUNDLED_MODELS, NAMED_MODELS
from .spec import ModelSpec, parse_model_spec


@dataclass(frozen=True)
class ModelIdentity:
    """What was loaded, precisely enough to put on every output row."""

    spec: str
    kind: str
    source: str
    revision: str | None = None
    weights_sha256: str | None = None

    @property
    def label(self) -> str:
        """`imageomics/bioclip@<commit12>`, `<dir>#sha256:<12>`, or `ViT-B-16:openai#sha256:<12>`."""
        if self.revision:
            return f"{self.source}@{self.revision[:12]}"
        if self.weights_sha256:
            return f"{self.source}#sha256:{self.weights_sha256[:12]}"
        return f"{self.source} (random init)" if self.kind == "open_clip" else self.source

    def as_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "source": self.source, "revision": self.revision,
                "weights_sha256": self.weights_sha256, "label": self.label}


@dataclass(frozen=True)
class TolFiles:
    """The two files of a tree-of-life bank and where they came from."""

    embeddings: Path
    names: Path
    source: str
    revision: str | None = None

    @property
    def label(self) -> str:
        return f"{self.source}@{self.revision[:12]}" if self.revision else self.source


@dataclass
class ResolvedModel:
    """A model spec turned into files on this machine (nothing loaded yet)."""

    spec: ModelSpec
    identity: ModelIdentity
    directory: Path | None = None  # hub-layout directory holding config + weights
    arch: str | None = None  # open_clip architecture (no directory)
    pretrained: str | None = None  # open_clip tag or weights file (no directory)
    config: dict | None = None  # open_clip_config.json
    weights: Path | None = None
    meta: dict = field(default_factory=dict)  # taxoclip.json of our own checkpoints
    tol_repo: str | None = None
    tol_revision: str | None = None

    def tol_files(self) -> TolFiles | None:
        """The model's tree-of-life bank, fetched on demand; None when the model has none."""
        if self.directory is not None:
            emb, names = self.directory / layout.TOL_EMBEDDINGS, self.directory / layout.TOL_NAMES
            if emb.is_file() and names.is_file():
                return TolFiles(emb, names, str(self.directory), self.identity.revision)
        if self.tol_repo is None:
            return None
        what = f"the tree-of-life bank of --model {self.spec.raw}"
        emb = hub_file(self.tol_repo, layout.TOL_EMBEDDINGS, self.tol_revision, "dataset", what)
        names = hub_file(self.tol_repo, layout.TOL_NAMES, self.tol_revision, "dataset", what)
        return TolFiles(emb, names, self.tol_repo, snapshot_revision(emb))


@dataclass
class LoadedModel:
    """An open_clip model ready for inference, with its preprocessing, tokenizer and identity."""

    model: Any
    preprocess: Any
    tokenizer: Any
    resolved: ResolvedModel
    model_cfg: dict
    preprocess_cfg: dict
    device: str = "cpu"

    @property
    def identity(self) -> ModelIdentity:
        return self.resolved.identity

    @property
    def embed_dim(self) -> int:
        return int(self.model_cfg["embed_dim"])

    @property
    def context_length(self) -> int:
        return int(self.model_cfg.get("text_cfg", {}).get("context_length", 77))

    def tol_files(self) -> TolFiles | None:
        return self.resolved.tol_files()


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise TaxoclipError(f"cannot read model config {path}: {err}") from None
    if "model_cfg" not in config:
        raise TaxoclipError(f"{path} has no 'model_cfg': not an open_clip config")
    return config


def _weights_in(directory: Path) -> Path | None:
    for name in layout.WEIGHTS_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def find_checkpoint_dir(directory: Path) -> Path:
    """A hub-layout dir as is; for a training run dir, its final, best or latest checkpoint."""
    if (directory / layout.CONFIG_FILE).is_file():
        return directory
    ckpts = directory / layout.CHECKPOINTS_DIR
    if ckpts.is_dir():
        for name in (layout.FINAL_CHECKPOINT, layout.BEST_CHECKPOINT):
            if (ckpts / name / layout.CONFIG_FILE).is_file():
                return ckpts / name
        steps = sorted(p for p in ckpts.glob("step-*") if (p / layout.CONFIG_FILE).is_file())
        if steps:
            return steps[-1]
    raise TaxoclipError(
        f"{directory} is not a model directory: it has no {layout.CONFIG_FILE} "
        f"(nor {layout.CHECKPOINTS_DIR}/ with a checkpoint)"
    )


def _resolve_directory(spec: ModelSpec, directory: Path, kind: str) -> ResolvedModel:
    directory = find_checkpoint_dir(directory)
    config = _read_config(directory / layout.CONFIG_FILE)
    weights = _weights_in(directory)
    if weights is None:
        raise MissingFilesError(f"{directory} has {layout.CONFIG_FILE} but no weights ({' or '.join(layout.WEIGHTS_FILES)})")
    meta_path = directory / layout.TAXOCLIP_META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    revision = snapshot_revision(directory / layout.CONFIG_FILE)
    sha = blob_sha256(weights)
    if sha is None:
        from ..cache import file_sha256

        sha = file_sha256(weights)
    identity = ModelIdentity(spec.raw, kind, str(directory), revision, sha)
    return ResolvedModel(spec, identity, directory=directory, config=config, weights=weights, meta=meta)


def _resolve_hub(spec: ModelSpec, repo: str, revision: str | None) -> ResolvedModel:
    what = f"--model {spec.raw}"
    config_path = hub_file(repo, layout.CONFIG_FILE, revision, "model", what)
    weights = first_hub_file(repo, layout.WEIGHTS_FILES, revision, "model", what)
    directory = config_path.parent
    commit = snapshot_revision(config_path)
    identity = ModelIdentity(spec.raw, "hf-hub", repo, commit, blob_sha256(weights))
    return ResolvedModel(spec, identity, directory=directory, config=_read_config(config_path), weights=weights)


def _resolve_open_clip(spec: ModelSpec) -> ResolvedModel:
    import open_clip

    arch, pretrained = spec.name, spec.pretrained
    if not arch:  # a bare weights file: its config must sit beside it
        weights = Path(pretrained)
        if (weights.parent / layout.CONFIG_FILE).is_file():
            return _resolve_directory(spec, weights.parent, "local-dir")
        raise TaxoclipError(f"--model {spec.raw}: name the architecture too, e.g. --model ViT-B-16:{weights}")
    if open_clip.get_model_config(arch) is None:
        raise TaxoclipError(f"--model {spec.raw}: unknown open_clip architecture {arch!r} (see `open_clip.list_models()`)")
    sha = None
    if pretrained and Path(pretrained).is_file():
        from ..cache import file_sha256

        sha = file_sha256(pretrained)
    elif pretrained:
        cfg = open_clip.get_pretrained_cfg(arch, pretrained)
        if not cfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
            raise TaxoclipError(f"--model {spec.raw}: {pretrained!r} is neither a file nor a pretrained tag of {arch} (tags: {tags})")
        if cfg.get("hf_hub"):
            repo_id = "/".join(cfg["hf_hub"].rstrip("/").split("/")[:2])
            weights = first_hub_file(repo_id, layout.WEIGHTS_FILES, None, "model", f"--model {spec.raw}")
            sha = blob_sha256(weights)
    identity = ModelIdentity(spec.raw, "open_clip", f"{arch}:{pretrained}" if pretrained else arch, None, sha)
    return ResolvedModel(spec, identity, arch=arch, pretrained=pretrained)


def _bundled_directory(alias: str) -> Path:
    import importlib.util

    module = BUNDLED_MODELS[alias]
    found = importlib.util.find_spec(module.rsplit(".", 1)[0])
    base = Path(next(iter(found.submodule_search_locations))) if found and found.submodule_search_locations else None
    directory = base / module.rsplit(".", 1)[1] if base else None
    if directory is None or not (directory / layout.CONFIG_FILE).is_file():
        raise MissingFilesError(f"the bundled model {alias!r} is not part of this installation of taxoclip")
    return directory


def resolve_model(spec: str | ModelSpec) -> ResolvedModel:
    """Find the files of a model spec on this machine (downloading only if the hub is reachable)."""
    spec = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    if spec.kind == "named":
        named = NAMED_MODELS[spec.name]
        resolved = _resolve_hub(spec, named.repo, spec.revision or named.revision)
        resolved.identity = ModelIdentity(spec.raw, "named", named.repo, resolved.identity.revision,
                                          resolved.identity.weights_sha256)
        resolved.tol_repo, resolved.tol_revision = named.tol_repo, named.tol_revision
        return resolved
    if spec.kind == "hf-hub":
        return _resolve_hub(spec, spec.name, spec.revision)
    if spec.kind == "local-dir":
        directory = Path(spec.name)
        if not directory.is_dir():
            raise TaxoclipError(f"--model {spec.raw}: no such directory")
        return _resolve_directory(spec, directory, "local-dir")
    if spec.kind == "bundled":
        return _resolve_directory(spec, _bundled_directory(spec.name), "bundled")
    return _resolve_open_clip(spec)


def load_model(spec: str | ModelSpec | ResolvedModel, device: str = "cpu", precision: str = "fp32") -> LoadedModel:
    """Build the open_clip model of a spec on `device`, in eval mode, with its own preprocessing."""
    import open_clip
    import torch
    from open_clip.model import get_model_preprocess_cfg

    resolved = spec if isinstance(spec, ResolvedModel) else resolve_model(spec)
    try:
        if resolved.directory is not None:
            name = f"local-dir:{resolved.directory}"
            model, _, preprocess = open_clip.create_model_and_transforms(name, precision=precision, device=device)
            model_cfg = dict(resolved.config["model_cfg"])
            tokenizer = open_clip.get_tokenizer(name)
        else:
            model, _, preprocess = open_clip.create_model_and_transforms(
                resolved.arch, pretrained=resolved.pretrained, precision=precision, device=device)
            model_cfg = dict(open_clip.get_model_config(resolved.arch))
            if resolved.pretrained and not Path(resolved.pretrained).is_file():
                tag_cfg = open_clip.get_pretrained_cfg(resolved.arch, resolved.pretrained) or {}
                if tag_cfg.get("quick_gelu"):
                    model_cfg["quick_gelu"] = True
            tokenizer = open_clip.get_tokenizer(resolved.arch)
    except (RuntimeError, ValueError, FileNotFoundError, KeyError, torch.serialization.pickle.UnpicklingError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TaxoclipError(f"cannot load --model {resolved.spec.raw}: {first}") from None
    model.eval()
    preprocess_cfg = dict(get_model_preprocess_cfg(model))
    return LoadedModel(model, preprocess, tokenizer, resolved, model_cfg, preprocess_cfg, str(device))
