"""Deterministic splits and shard order, by seed.

Every decision is a function of (seed, purpose, sample id) through sha256, never of a global RNG,
of worker count or of input order: the same config gives the same splits on any machine, and a
sample keeps its split when unrelated samples are added or removed.

- val: per source, the `round(val_fraction * n)` samples with the smallest `val` keys.
- train_small: per source, the `round(train_small_fraction * n_train)` train samples with the
  smallest `train_small` keys (a subset of train, written again as its own split).
- order: within each split, samples are sorted by their `order` key, so shards mix sources and
  species instead of holding one folder each.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

MIN_PART_SAMPLES = 1000
TARGET_PARTS = 64


def seeded_keys(ids: Iterable[str], seed: int, purpose: str) -> np.ndarray:
    """A uint64 pseudo-random key per id, fixed by (seed, purpose, id)."""
    prefix = f"{seed}/{purpose}/".encode()
    return np.array([int.from_bytes(hashlib.sha256(prefix + i.encode()).digest()[:8], "big") for i in ids],
                    dtype=np.uint64)


def _lowest(frame: pd.DataFrame, keys: np.ndarray, fractions: Mapping[str, float]) -> np.ndarray:
    """Per source, mark the round(fraction * n) rows with the smallest keys."""
    chosen = np.zeros(len(frame), dtype=bool)
    sources = frame["source"].to_numpy()
    for source in pd.unique(sources):
        rows = np.flatnonzero(sources == source)
        count = int(round(fractions.get(source, 0.0) * len(rows)))
        if count:
            order = rows[np.lexsort((frame["id"].to_numpy()[rows], keys[rows]))]
            chosen[order[:count]] = True
    return chosen


def assign_splits(samples: pd.DataFrame, seed: int, val_fractions: Mapping[str, float],
                  train_small_fractions: Mapping[str, float]) -> tuple[pd.Series, pd.Series]:
    """`split` ("train"/"val") and a `train_small` flag for each sample (columns id, source)."""
    ids = samples["id"].tolist()
    val = _lowest(samples, seeded_keys(ids, seed, "val"), val_fractions)
    split = pd.Series(np.where(val, "val", "train"), index=samples.index)
    small = np.zeros(len(samples), dtype=bool)
    train_rows = np.flatnonzero(~val)
    if len(train_rows):
        train = samples.iloc[train_rows]
        small[train_rows] = _lowest(train, seeded_keys(train["id"].tolist(), seed, "train_small"),
                                    train_small_fractions)
    return split, pd.Series(small, index=samples.index)


def shard_order(ids: Iterable[str], seed: int) -> np.ndarray:
    """Sort keys that interleave samples across shards (ties broken by id by the caller)."""
    return seeded_keys(ids, seed, "order")


def part_size(count: int, max_samples: int) -> int:
    """Samples per unit of parallel work (and hence per shard, at most): up to `max_samples`,
    smaller for small splits so that about TARGET_PARTS parts run in parallel, never below
    MIN_PART_SAMPLES unless the shard limit is smaller. Independent of the worker count, so a
    build resumed with other `--workers` plans the same shards."""
    return max(1, min(max_samples, max(MIN_PART_SAMPLES, math.ceil(count / TARGET_PARTS))))
