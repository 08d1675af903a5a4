"""The paper's cross-entropy baselines, on the same backbone and data as the contrastive model.

- `ce_species`: one linear head over the species (full lineages) on the image embedding.
- `ce_hierarchical`: one head per rank (kingdom .. species), the loss averaged over ranks;
  a class at rank r is the lineage prefix down to r, so same-named taxa under different
  parents stay distinct. Samples missing a rank are ignored by that rank's head.

Labels come from each sample's tagged caption (`taxontag.txt`, unambiguous about which rank
each name is); the class list from the data set's `catalog.csv` when it sits beside the split
directory, else from one pass over the training shards' text members. Only the image tower and
the heads are trained. Checkpoints are the usual hub layout (so `load_model` gives the image
tower for features), plus `classifier.safetensors` (heads) and `classifier.json` (classes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data.schema import CATALOG_CSV, caption_member
from ..taxonomy.taxon import RANKS, Taxon, rank_index
from ..taxonomy.text import CAPTION_FORMAT
from .data import ShardSet, member_filter, read_shard

CLASSIFIER_WEIGHTS = "classifier.safetensors"
CLASSIFIER_CLASSES = "classifier.json"
"""`{"objective": ..., "ranks": [...], "classes": {rank: [lineage text, ...]}}`, head order = class order."""
IGNORE = -100

LABEL_MEMBER = caption_member("taxonTag")
OBJECTIVE_RANKS: dict[str, tuple[str, ...]] = {"ce_species": ("species",), "ce_hierarchical": RANKS}


def parse_tagged(text: str) -> Taxon:
    """The taxon of a tagged text or caption: `a photo of kingdom Animalia ... species hudsonia.`"""
    before, after = CAPTION_FORMAT.split("{}")
    text = text.strip()
    if text.startswith(before) and text.endswith(after):
        text = text[len(before): len(text) - len(after)]
    values: dict[str, list[str]] = {}
    current = -1
    for word in text.split():
        if word in RANKS and RANKS.index(word) > current:
            current = RANKS.index(word)
            values[word] = []
        elif current >= 0:
            values[RANKS[current]].append(word)
    return Taxon.from_ranks({rank: " ".join(words) for rank, words in values.items()})


def class_key(taxon: Taxon, rank: str) -> str | None:
    """The class of `taxon` at `rank` (its lineage down to that rank), or None if the rank is missing."""
    if not taxon.ranks[rank_index(rank)]:
        return None
    return " ".join(value for value in taxon.prefix(rank) if value)


def class_lists(train_spec: str, shards: ShardSet, ranks: Sequence[str]) -> dict[str, list[str]]:
    """Sorted classes per rank, from the catalog beside the split directory or from the shards."""
    catalog = Path(train_spec).parent / CATALOG_CSV
    if Path(train_spec).is_dir() and catalog.is_file():
        import pandas as pd

        table = pd.read_csv(catalog, dtype=str, usecols=list(RANKS)).fillna("")
        taxa = [Taxon.from_ranks(row) for row in table.drop_duplicates().to_dict("records")]
    else:
        wanted = member_filter([LABEL_MEMBER])
        texts = {s[LABEL_MEMBER].decode("utf-8") for url in shards.urls for s in read_shard(url, wanted)
                 if LABEL_MEMBER in s}
        taxa = [parse_tagged(text) for text in texts]
    return {rank: sorted({k for k in (class_key(t, rank) for t in taxa) if k}) for rank in ranks}


class RankLabels:
    """Targets of the CE objectives: [n, heads] class indices (IGNORE where a rank is missing)."""

    def __init__(self, classes: dict[str, list[str]]) -> None:
        self.ranks = tuple(classes)
        self.index = {rank: {name: i for i, name in enumerate(names)} for rank, names in classes.items()}

    def __call__(self, samples: Sequence[dict], epoch: int, batch: int, stream: int) -> torch.Tensor:
        rows = []
        for sample in samples:
            taxon = parse_tagged(sample[LABEL_MEMBER].decode("utf-8"))
            rows.append([self.index[rank].get(class_key(taxon, rank) or "", IGNORE) for rank in self.ranks])
        return torch.tensor(rows, dtype=torch.long)


class Classifier(torch.nn.Module):
    """An open_clip image tower with one linear head per rank on its (projected) embedding."""

    def __init__(self, clip: Any, classes: dict[str, list[str]], embed_dim: int) -> None:
        super().__init__()
        self.clip = clip
        self.heads = torch.nn.ModuleList(torch.nn.Linear(embed_dim, len(names)) for names in classes.values())
        for name, parameter in clip.named_parameters():
            parameter.requires_grad_(name.startswith("visual."))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        features = self.clip.encode_image(images)
        return [head(features) for head in self.heads]


def classifier_loss(logits: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Mean over heads of each head's cross-entropy over the samples that have its rank."""
    losses = []
    for head, head_logits in enumerate(logits):
        target = labels[:, head]
        count = int((target != IGNORE).sum())
        if count:
            losses.append(F.cross_entropy(head_logits.float(), target, ignore_index=IGNORE, reduction="sum") / count)
    return torch.stack(losses).mean() if losses else logits[0].sum() * 0.0


def finest_accuracy(logits: Sequence[torch.Tensor], labels: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) top-1 of the last head (species, or the deepest rank)."""
    target = labels[:, -1]
    keep = target != IGNORE
    correct = int((logits[-1].argmax(dim=-1)[keep] == target[keep]).sum())
    return correct, int(keep.sum())


def save_heads(classifier: Classifier, directory: Path, objective: str, classes: dict[str, list[str]]) -> None:
    """Write the heads and their class names beside a saved checkpoint."""
    from safetensors.torch import save_model

    save_model(classifier.heads, str(directory / CLASSIFIER_WEIGHTS))
    payload = {"objective": objective, "ranks": list(classes), "classes": classes}
    (directory / CLASSIFIER_CLASSES).write_text(json.dumps(payload))


def load_heads(classifier: Classifier, directory: Path) -> None:
    from safetensors.torch import load_model

    load_model(classifier.heads, str(directory / CLASSIFIER_WEIGHTS))
