"""Evaluation during training: validation loss every epoch, optional zero-shot accuracy."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Any

import torch

from ..data.schema import IMAGE_MEMBER, member_key
from .config import ZeroShotSection
from .data import decode_images, find_shards, member_filter, read_shard


class ZeroShotTask:
    """A small labelled set read once: images plus the class names of a name member.

    Classes are the distinct values of `name_member` (e.g. `taxonomic_name`) among the first
    `max_samples` samples; accuracy is top-1 against class embeddings averaged over templates.
    """

    def __init__(self, section: ZeroShotSection) -> None:
        member = member_key(f"{section.name_member}.txt")
        shards = find_shards(section.data)
        wanted = member_filter([IMAGE_MEMBER, member])
        samples = islice((s for url in shards.urls for s in read_shard(url, wanted) if member in s),
                         section.max_samples)
        self.samples = list(samples)
        names = [s[member].decode("utf-8").strip() for s in self.samples]
        self.classes = sorted(set(names))
        self.labels = torch.tensor([self.classes.index(n) for n in names])
        self.templates = [section.templates] if "{}" in section.templates else section.templates

    def accuracy(self, clip: Any, tokenizer: Any, transform: Callable, normalize: Callable, device: str,
                 autocast: Any, batch_size: int = 256) -> float:
        from ..models.encode import class_embeddings

        with torch.no_grad(), autocast():
            classes = class_embeddings(clip, tokenizer, self.classes, templates=self.templates, device=device)
            correct = 0
            for start in range(0, len(self.samples), batch_size):
                images = normalize(decode_images(self.samples[start:start + batch_size], transform, None).to(device))
                features = torch.nn.functional.normalize(clip.encode_image(images).float(), dim=-1)
                predicted = (features @ classes.to(device).T).argmax(dim=-1).cpu()
                correct += int((predicted == self.labels[start:start + batch_size]).sum())
        return correct / max(1, len(self.samples))
