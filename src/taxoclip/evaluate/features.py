"""Frozen image and class-text features for evaluation, cached on disk.

Image features are computed once per (model identity, image list, preprocessing) and kept
under `cache_dir()/eval-features/`; a long extraction saves finished blocks as it goes, so an
interrupted run resumes where it stopped. Images that cannot be read are recorded per item
(`FeatureSet.errors`) and left out of the metrics; they never stop the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import cache_dir

BLOCK_SIZE = 2048
"""Images per saved block of an extraction (the unit of resuming)."""


def pick_device(device: str = "auto") -> str:
    """`auto` -> cuda, else mps, else cpu; anything else as given."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def default_workers() -> int:
    """Decoding workers: all cores but one, at least 1, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass
class FeatureSet:
    """L2-normalised image features [N, D] (zeros where an image failed) and the failures."""

    features: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)  # row -> one-line message

    @property
    def ok(self) -> np.ndarray:
        mask = np.ones(len(self.features), dtype=bool)
        if self.errors:
            mask[list(self.errors)] = False
        return mask


class _ImageList:
    """A torch-style dataset over file paths: (pixel tensor, "" or the error message)."""

    def __init__(self, paths: Sequence[str], preprocess: Any, size: tuple[int, int]):
        self.paths, self.preprocess, self.size = list(paths), preprocess, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(self.paths[i]) as image:
                image = ImageOps.exif_transpose(image).convert("RGB")
                return self.preprocess(image), ""
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()
            return torch.zeros(3, *self.size), message


def _file_stamp(path: str) -> list:
    try:
        stat = os.stat(path)
        return [path, stat.st_size, stat.st_mtime_ns]
    except OSError:
        return [path, -1, -1]


def features_key(model_label: str, preprocess: Any, paths: Sequence[str]) -> str:
    """Cache key of an extraction: model identity, preprocessing and the files (with size/mtime)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([model_label, repr(preprocess)]).encode())
    for path in paths:
        digest.update(json.dumps(_file_stamp(path)).encode())
    return digest.hexdigest()[:24]


def _crop_size(loaded: Any) -> tuple[int, int]:
    size = loaded.preprocess_cfg.get("size") or loaded.model_cfg.get("vision_cfg", {}).get("image_size", 224)
    return (size, size) if isinstance(size, int) else tuple(size)


def slug(text: str) -> str:
    """A file-name-safe form of a model or task name."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-.")[:60] or "x"


def image_features(loaded: Any, paths: Sequence[str], *, name: str = "images", batch_size: int = 64,
                   workers: int | None = None, cache: bool = True, progress: bool = True) -> FeatureSet:
    """Normalised image features of `paths` with a loaded model's own preprocessing (cached)."""
    key = features_key(loaded.identity.label, loaded.preprocess, paths)
    root = cache_dir() / "eval-features"
    final = root / f"{key}.npz"  # named by content only: tasks over the same images share it
    if cache and final.is_file():
        return _read_features(final)
    parts = root / f"{key}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    blocks = []
    starts = range(0, len(paths), BLOCK_SIZE)
    for block, start in enumerate(starts):
        part = parts / f"block-{block:06d}.npz"
        if not (cache and part.is_file()):
            chunk = _extract(loaded, paths[start:start + BLOCK_SIZE], batch_size, workers, progress,
                             f"{name} {block + 1}/{len(starts)}" if len(starts) > 1 else name)
            _write_features(part, chunk)
        blocks.append(_read_features(part, offset=start))
    dim = loaded.embed_dim
    result = FeatureSet(np.concatenate([b.features for b in blocks]) if blocks else np.zeros((0, dim), np.float32),
                        {i: m for b in blocks for i, m in b.errors.items()})
    if cache:
        _write_features(final, result)
        (root / f"{key}.json").write_text(json.dumps({
            "task": name, "model": loaded.identity.label, "preprocess": repr(loaded.preprocess),
            "images": len(paths), "failed": len(result.errors)}, indent=1))
    shutil.rmtree(parts, ignore_errors=True)
    return result


def _extract(loaded: Any, paths: Sequence[str], batch_size: int, workers: int | None, progress: bool,
             desc: str) -> FeatureSet:
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    workers = default_workers() if workers is None else workers
    dataset = _ImageList(paths, loaded.preprocess, _crop_size(loaded))
    # Decoding in the main process suffers from torch's intra-op threads; one worker is already faster.
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         pin_memory=str(loaded.device).startswith("cuda"))
    chunks, errors = [], {}
    dtype = next(loaded.model.parameters()).dtype
    with torch.inference_mode(), tqdm(total=len(paths), desc=f"image features: {desc}", unit="img",
                                      disable=not progress, file=sys.stderr) as bar:
        for images, messages in loader:
            start = sum(len(c) for c in chunks)
            errors.update({start + j: m for j, m in enumerate(messages) if m})
            features = loaded.model.encode_image(images.to(loaded.device, dtype=dtype)).float()
            chunks.append(F.normalize(features, dim=-1).cpu().numpy())
            bar.update(len(images))
    features = np.concatenate(chunks) if chunks else np.zeros((0, loaded.embed_dim), np.float32)
    features[list(errors)] = 0.0
    return FeatureSet(features.astype(np.float32), errors)


def _write_features(path: Path, result: FeatureSet) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, features=result.features, error_rows=np.array(list(result.errors), dtype=np.int64),
             error_messages=np.array(list(result.errors.values()), dtype=str))
    os.replace(tmp, path)


def _read_features(path: Path, offset: int = 0) -> FeatureSet:
    with np.load(path) as data:
        errors = {int(r) + offset: str(m) for r, m in zip(data["error_rows"], data["error_messages"])}
        return FeatureSet(data["features"], errors)


def text_features(loaded: Any, texts: Sequence[str], templates: str | Sequence[str] = "bioclip",
                  cache: bool = True, progress: bool = False) -> np.ndarray:
    """Zero-shot class vectors [C, D] (template ensemble, renormalised), cached per model and texts."""
    from ..models.encode import class_embeddings
    from ..taxonomy.templates import templates as template_set

    chosen = template_set(templates) if isinstance(templates, str) else tuple(templates)
    digest = hashlib.sha256(json.dumps([loaded.identity.label, list(chosen), list(texts)]).encode()).hexdigest()[:24]
    path = cache_dir() / "eval-text" / f"{digest}.npy"
    if cache and path.is_file():
        return np.load(path)
    vectors = class_embeddings(loaded.model, loaded.tokenizer, list(texts), templates=chosen,
                               device=loaded.device, progress=progress).numpy().astype(np.float32)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, vectors)
        os.replace(tmp, path)
    return vectors


def task_features(loaded: Any, task: Any, **options: Any) -> FeatureSet:
    """`image_features` over a task's images (named after the task in the cache)."""
    return image_features(loaded, task.paths, name=task.name, **options)
