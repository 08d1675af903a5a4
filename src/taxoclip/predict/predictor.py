"""The Python API behind `taxoclip predict` and `taxoclip embed`.

    from taxoclip.predict import Predictor
    predictor = Predictor("bioclip")                       # tree-of-life bank of the model
    table = predictor.predict(["photos/"], rank="genus", k=3)
    for rows in predictor.iter_predict(paths): ...         # streaming, one list of rows per batch

Images are decoded and preprocessed in DataLoader worker processes while the model runs;
each batch is scored against the whole bank (`softmax(logit_scale * image . text)`), summed
into the requested rank with one `index_add_`, cut to the top k, and dropped: no per-image
probability vector is kept.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TaxoclipError
from ..taxonomy.taxon import RANKS, rank_index
from .banks import BIN_COLUMN, LABEL_COLUMN, LabelBank, open_bank
from .inputs import InputItem, expand_inputs, load_image, one_line
from .ranks import COMMON_COLUMN, aggregate

PREPROCESS_MODES: tuple[str, ...] = ("model", "squash")
"""`model`: the checkpoint's own open_clip transform (resize shorter side + centre crop);
`squash`: pybioclip's (whole image resized to the square input size, aspect ratio ignored)."""


def resolve_device(device: str = "auto") -> str:
    """`auto` is `cuda` when available, else `cpu`; anything else is checked and passed through."""
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TaxoclipError(f"--device {device}: CUDA is not available on this machine (try --device cpu)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TaxoclipError("--device mps: MPS is not available on this machine (try --device cpu)")
    return device


def default_workers() -> int:
    """Decode workers: one per spare core, at most 8 (0 on a single core: decode in-process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cores - 1))


def squash_transform(preprocess_cfg: dict) -> Any:
    """pybioclip's preprocessing: to tensor, resize (bilinear, antialiased) to a square, normalise."""
    from torchvision import transforms

    size = preprocess_cfg.get("size", 224)
    size = tuple(size) if isinstance(size, list | tuple) else (size, size)
    return transforms.Compose([
        transforms.ToTensor(),
        transforms.Resize(size, antialias=True),
        transforms.Normalize(mean=preprocess_cfg.get("mean"), std=preprocess_cfg.get("std")),
    ])


class ImageDataset:
    """Decoded, preprocessed images by index; a failure is returned as its one-line message."""

    def __init__(self, items: Sequence[InputItem], transform: Any):
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any, str | None]:
        item = self.items[index]
        if item.error:
            return index, None, item.error
        try:
            return index, self.transform(load_image(item.image_source)), None
        except Exception as err:  # noqa: BLE001 - any decode failure is this image's error, not the run's
            return index, None, one_line(err)


def collate(samples: list[tuple[int, Any, str | None]]) -> tuple[list[int], Any, list[int], dict[int, str]]:
    """Batch indices, the stacked tensors that decoded, their indices, and errors by index."""
    import torch

    good = [(index, tensor) for index, tensor, error in samples if error is None]
    errors = {index: error for index, _, error in samples if error is not None}
    stacked = torch.stack([tensor for _, tensor in good]) if good else None
    return [index for index, _, _ in samples], stacked, [index for index, _ in good], errors


@dataclass
class Batch:
    """One batch of inputs: items, unit image features of the ones that decoded, errors."""

    items: list[InputItem]
    features: Any  # [n_good, D] float32, or None
    good: list[int]  # positions in `items` with features, in order
    errors: dict[int, str]  # position in `items` -> message


class Predictor:
    """A model, its preprocessing and (lazily) a label bank, with streaming predict/embed.

    Parameters mirror the CLI: `model` (any `--model` spec), `device` (`auto`), `labels` /
    `bins` (custom labels; `bins` maps label -> bin), `bank` (`auto`, `inat`, a taxa CSV or a
    bank directory), `taxa` (filters such as `class=Aves`; softmax over the filtered bank),
    `templates`, `preprocess` (`model` or `squash`), `batch_size`, `workers` (None: one per
    spare core), `compile` (torch.compile the image tower), `progress` (tqdm on stderr).
    """

    def __init__(self, model: str = "bioclip", *, device: str = "auto", precision: str = "fp32",
                 labels: Sequence[str] | None = None, bins: dict[str, str] | None = None, bank: str = "auto",
                 taxa: Sequence[str] = (), templates: str | Sequence[str] = "openai", preprocess: str = "model",
                 batch_size: int = 32, workers: int | None = None, compile: bool = False, progress: bool = False):
        from ..models import load_model

        if preprocess not in PREPROCESS_MODES:
            raise TaxoclipError(f"--preprocess {preprocess!r}: expected one of {', '.join(PREPROCESS_MODES)}")
        if batch_size < 1:
            raise TaxoclipError("--batch-size must be at least 1")
        self.device = resolve_device(device)
        self.loaded = load_model(model, device=self.device, precision=precision)
        self.labels = list(labels) if labels is not None else None
        self.bins = dict(bins) if bins is not None else None
        self.bank_source = bank
        self.taxa_filters = list(taxa or ())
        self.templates = templates
        self.preprocess_mode = preprocess
        self.batch_size = int(batch_size)
        self.workers = default_workers() if workers is None else max(0, int(workers))
        self.progress = progress
        self._bank: LabelBank | None = None
        self._encode_image = self.loaded.model.encode_image
        if compile:
            import torch

            self._encode_image = torch.compile(self.loaded.model.encode_image)

    # -- identity, bank, preprocessing ---------------------------------------------------------------
    @property
    def model_label(self) -> str:
        """The model's identity label (`imageomics/bioclip@<commit12>`, `<dir>#sha256:<12>`, ...)."""
        return self.loaded.identity.label

    @property
    def bank(self) -> LabelBank:
        """The label bank, loaded or built on first use and moved to the model's device."""
        if self._bank is None:
            bank = open_bank(self.loaded, self.bank_source, self.labels, self.bins, self.taxa_filters,
                             self.templates, self.progress)
            self._bank = bank.to(self.device)
        return self._bank

    @property
    def transform(self) -> Any:
        if self.preprocess_mode == "squash":
            return squash_transform(self.loaded.preprocess_cfg)
        return self.loaded.preprocess

    @property
    def logit_scale(self) -> float:
        return float(self.loaded.model.logit_scale.exp().item())

    # -- images -> features -------------------------------------------------------------------------
    def iter_batches(self, inputs: Iterable[Any] | Sequence[InputItem], skip: set[str] | None = None,
                     desc: str = "images") -> Iterator[Batch]:
        """Decode, preprocess (in workers) and encode inputs batch by batch, in input order."""
        import torch
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        inputs = list(inputs)
        items = inputs if inputs and all(isinstance(i, InputItem) for i in inputs) else expand_inputs(inputs)
        done = len(items)
        if skip:
            items = [item for item in items if item.path not in skip]
        done -= len(items)
        if not items:
            return
        workers = min(self.workers, math.ceil(len(items) / self.batch_size))
        loader = torch.utils.data.DataLoader(
            ImageDataset(items, self.transform), batch_size=self.batch_size, shuffle=False, num_workers=workers,
            collate_fn=collate, prefetch_factor=2 if workers else None)
        bar = tqdm(total=done + len(items), initial=done, desc=desc, unit="img", disable=not self.progress,
                   dynamic_ncols=True)
        with torch.inference_mode():
            for indices, stacked, good, errors in loader:
                features = None
                if stacked is not None:
                    encoded = self._encode_image(stacked.to(self.device, non_blocking=True))
                    features = F.normalize(encoded.float(), dim=-1)
                start = indices[0]
                yield Batch([items[i] for i in indices], features, [i - start for i in good],
                            {i - start: message for i, message in errors.items()})
                bar.update(len(indices))
        bar.close()

    def probabilities(self, features: Any, bank: LabelBank | None = None) -> Any:
        """`softmax(logit_scale * features . bank)` over all N classes: `[B, N]` float32."""
        import torch

        bank = bank or self.bank
        logits = torch.mm(bank.embeddings, features.T).T.contiguous()  # [N, D] x [D, B]: the fast layout
        logits.mul_(self.logit_scale)
        return torch.softmax(logits, dim=1)

    # -- prediction ---------------------------------------------------------------------------------
    def columns(self, rank: str = "species", wide: bool = False, abstain: float | None = None) -> list[str]:
        """The output columns for these options (every row has all of them)."""
        if not self.bank.taxonomic:
            head = ["path", "label", "score"] if wide else ["path", "k", "label", "score"]
        elif wide:
            depth = rank_index(rank) + 1
            head = ["path"] + [c for r in RANKS[:depth] for c in (r, f"{r}_score")]
            head += [COMMON_COLUMN] if depth == len(RANKS) else []
        else:
            head = ["path", "k", "rank", "name", "score", *RANKS, COMMON_COLUMN]
        extra = ["abstain_rank", "abstain_name", "abstain_score"] if abstain is not None and self.bank.taxonomic else []
        return [*head, *extra, "model", "bank", "error"]

    def iter_predict(self, inputs: Iterable[Any], rank: str = "species", k: int = 5, min_score: float = 0.0,
                     wide: bool = False, abstain: float | None = None,
                     skip: set[str] | None = None) -> Iterator[list[dict]]:
        """Rows for each batch of inputs (see `columns`), streaming; every input exactly once.

        Long rows: one per image and rank-k (k = 1..k, score >= min_score; an image with none
        gets one row with empty k). Wide rows: one per image with the top-1 at every rank down
        to `rank`. `abstain`: also the deepest rank whose best summed probability >= it.
        """
        bank = self.bank
        if k < 1:
            raise TaxoclipError("--k must be at least 1")
        if bank.taxonomic:
            rank = RANKS[rank_index(rank)]
        elif rank not in ("species", None):
            raise TaxoclipError("--rank applies to taxonomic banks, not to custom labels")
        if abstain is not None and not 0 < abstain <= 1:
            raise TaxoclipError("--abstain takes a probability threshold in (0, 1]")
        if abstain is not None and not bank.taxonomic:
            raise TaxoclipError("--abstain applies to taxonomic banks (ranks), not to custom labels")
        columns = self.columns(rank, wide, abstain)
        blank = dict.fromkeys(columns)
        for batch in self.iter_batches(inputs, skip):
            scored = self._score_batch(batch, bank, rank, k, min_score, wide, abstain)
            rows: list[dict] = []
            for position, item in enumerate(batch.items):
                if position in batch.errors:
                    rows.append({**blank, "path": item.path, "model": self.model_label, "bank": bank.label,
                                 "error": batch.errors[position]})
                    continue
                for row in scored[position]:
                    rows.append({**blank, **row, "path": item.path, "model": self.model_label, "bank": bank.label,
                                 "error": None})
            yield rows

    def _score_batch(self, batch: Batch, bank: LabelBank, rank: str, k: int, min_score: float, wide: bool,
                     abstain: float | None) -> dict[int, list[dict]]:
        if batch.features is None:
            return {}
        probs = self.probabilities(batch.features, bank)
        if not bank.taxonomic:
            level = BIN_COLUMN if bank.has_bins else LABEL_COLUMN
            return _top_rows(probs, bank.groups(level), batch.good, 1 if wide else k, min_score,
                             lambda groups, g: {"label": groups.names[g]}, numbered=not wide)
        needed = RANKS[: rank_index(rank) + 1] if wide else (rank,)
        if abstain is not None:
            needed = RANKS
        tops = {r: _topk(aggregate(probs, bank.groups(r)), k if r == rank and not wide else 1) for r in needed}
        del probs
        out: dict[int, list[dict]] = {}
        for row_index, position in enumerate(batch.good):
            extra = _abstain_columns(bank, tops, row_index, abstain) if abstain is not None else {}
            if wide:
                row = dict(extra)
                for r in RANKS[: rank_index(rank) + 1]:
                    values, indices = tops[r]
                    groups = bank.groups(r)
                    row[r] = groups.names[indices[row_index, 0]]
                    row[f"{r}_score"] = float(values[row_index, 0])
                    if r == "species":
                        row[COMMON_COLUMN] = groups.table[COMMON_COLUMN].iat[indices[row_index, 0]]
                out[position] = [row]
                continue
            values, indices = tops[rank]
            groups = bank.groups(rank)
            rows = []
            for j in range(values.shape[1]):
                score = float(values[row_index, j])
                if score < min_score:
                    break
                g = int(indices[row_index, j])
                rows.append({"k": j + 1, "rank": rank, "name": groups.names[g], "score": score,
                             **_lineage(groups, g), **extra})
            out[position] = rows or [{"rank": rank, **extra}]
        return out

    def predict(self, inputs: Iterable[Any], **options: Any) -> Any:
        """All rows of `iter_predict` as a pandas DataFrame (for small inputs; stream big ones)."""
        import pandas as pd

        columns = self.columns(options.get("rank", "species"), options.get("wide", False), options.get("abstain"))
        rows = [row for batch in self.iter_predict(inputs, **options) for row in batch]
        return pd.DataFrame(rows, columns=columns)

    # -- embeddings ---------------------------------------------------------------------------------
    def embed_columns(self) -> list[str]:
        return ["path", "model", "embedding", "error"]

    def iter_embed(self, inputs: Iterable[Any], skip: set[str] | None = None) -> Iterator[list[dict]]:
        """Per batch: one row per input with its unit image embedding (float32 list) or error."""
        for batch in self.iter_batches(inputs, skip, desc="embedding"):
            vectors = batch.features.cpu().numpy() if batch.features is not None else None
            where = {position: row for row, position in enumerate(batch.good)}
            rows = []
            for position, item in enumerate(batch.items):
                vector = vectors[where[position]] if position in where else None
                rows.append({"path": item.path, "model": self.model_label, "embedding": vector,
                             "error": batch.errors.get(position)})
            yield rows

    def embed(self, inputs: Iterable[Any]) -> Any:
        """Unit image embeddings as a DataFrame (path, model, embedding, error)."""
        import pandas as pd

        rows = [row for batch in self.iter_embed(inputs) for row in batch]
        return pd.DataFrame(rows, columns=self.embed_columns())


def _topk(scores: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    values, indices = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    return values.cpu().numpy(), indices.cpu().numpy()


def _lineage(groups: Any, g: int) -> dict:
    table = groups.table
    row = {column: table[column].iat[g] for column in RANKS[:-1] if column in table}
    if "species_epithet" in table:
        row["species"] = groups.names[g]
        row[COMMON_COLUMN] = table[COMMON_COLUMN].iat[g]
    return row


def _abstain_columns(bank: LabelBank, tops: dict, row_index: int, threshold: float) -> dict:
    """The deepest rank whose best group clears `threshold` (empty when even kingdom does not)."""
    for r in reversed(RANKS):
        values, indices = tops[r]
        if values[row_index, 0] >= threshold:
            return {"abstain_rank": r, "abstain_name": bank.groups(r).names[indices[row_index, 0]],
                    "abstain_score": float(values[row_index, 0])}
    return {"abstain_rank": None, "abstain_name": None, "abstain_score": None}


def _top_rows(probs: Any, groups: Any, good: list[int], k: int, min_score: float, name_of: Any,
              numbered: bool) -> dict[int, list[dict]]:
    values, indices = _topk(aggregate(probs, groups), k)
    out = {}
    for row_index, position in enumerate(good):
        rows = []
        for j in range(values.shape[1]):
            score = float(values[row_index, j])
            if score < min_score:
                break
            rows.append({**({"k": j + 1} if numbered else {}), **name_of(groups, int(indices[row_index, j])),
                         "score": score})
        out[position] = rows or [{}]
    return out
