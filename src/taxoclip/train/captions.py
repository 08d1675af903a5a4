"""Which caption each training sample gets: a text type drawn per image or per global batch.

Draws come from numpy generators seeded by (seed, epoch, batch[, stream]) alone, so they are
the same on any number of processes and workers, reproducible after a resume, and they never
touch (or reseed) the global RNGs of Python, numpy or torch.

Distributions (documented in docs/train.md and checked by tests):
- `image`: every image draws its type independently and uniformly from `text_types`, so a
  batch of n images holds a multinomial(n, 1/k) mix of the k types.
- `batch`: all images of one global batch share one type, drawn uniformly per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.schema import caption_member

_PER_IMAGE, _PER_BATCH, _AUGMENT = 1, 2, 3
"""Purpose tags mixed into seeds, so that the streams of random numbers never overlap."""


def batch_generator(seed: int, epoch: int, batch: int, stream: int, purpose: int) -> np.random.Generator:
    """A generator that depends only on its arguments (all non-negative integers)."""
    return np.random.default_rng([seed, epoch, batch, stream, purpose])


class CaptionSampler:
    """Draws text types (and the shard members holding their captions) for training samples."""

    def __init__(self, text_types: Sequence[str], mode: str = "image", seed: int = 0) -> None:
        if mode not in ("image", "batch"):
            raise ValueError(f"text sampling mode {mode!r}: expected image or batch")
        self.text_types = tuple(text_types)
        self.members = tuple(caption_member(t) for t in self.text_types)
        self.mode = mode
        self.seed = seed

    def type_indices(self, epoch: int, batch: int, stream: int, size: int) -> np.ndarray:
        """Indices into `text_types` for `size` samples of one stream's share of a global batch."""
        k = len(self.text_types)
        if self.mode == "batch":
            shared = batch_generator(self.seed, epoch, batch, 0, _PER_BATCH).integers(k)
            return np.full(size, shared, dtype=np.int64)
        return batch_generator(self.seed, epoch, batch, stream, _PER_IMAGE).integers(k, size=size)

    def types(self, epoch: int, batch: int, stream: int, size: int) -> list[str]:
        return [self.text_types[i] for i in self.type_indices(epoch, batch, stream, size)]

    def pick(self, samples: Sequence[dict], epoch: int, batch: int, stream: int) -> list[str]:
        """The caption text of each sample (decoded from its lower-cased caption member)."""
        chosen = self.type_indices(epoch, batch, stream, len(samples))
        captions = []
        for sample, index in zip(samples, chosen):
            member = self.members[index]
            value = sample.get(member)
            if value is None:
                raise KeyError(f"sample {sample.get('__key__')} in {sample.get('__url__')} has no {member} member")
            captions.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
        return captions


def augmentation_seeds(seed: int, epoch: int, batch: int, stream: int, size: int) -> list[int]:
    """Per-sample seeds for random augmentation, so crops do not depend on worker RNG history."""
    return [int(s) for s in batch_generator(seed, epoch, batch, stream, _AUGMENT).integers(2**62, size=size)]


class CaptionTokens:
    """Training targets of the contrastive objective: the drawn captions, tokenized."""

    def __init__(self, sampler: CaptionSampler, tokenizer: object) -> None:
        self.sampler, self.tokenizer = sampler, tokenizer

    def __call__(self, samples: Sequence[dict], epoch: int, batch: int, stream: int) -> object:
        return self.tokenizer(self.sampler.pick(samples, epoch, batch, stream))
