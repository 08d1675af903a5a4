"""Training and validation batches from webdataset shards, in an order fixed by (seed, epoch).

Shards are read with webdataset (local paths, URLs, `pipe:` commands, brace patterns). The
order of samples is a pure function of the seed and the epoch, independent of the number of
processes and workers, which makes three things exact: resuming mid-epoch, comparing runs on
1..N processes, and recomputing a batch.

How a global batch is made:
- Every epoch, the shards are permuted with a generator seeded by (seed, epoch) and dealt
  round-robin to `streams` parallel streams. When there are fewer shards than streams, each
  shard is dealt as several interleaved slices (sample i goes to slice i mod m).
- Each stream reads its slices in order through a shuffle buffer seeded by (seed, epoch,
  stream), drained completely at the end of its share. A stream that runs out of its share
  keeps going with slices drawn at random (the "resampling" of webdataset); with
  `resampled: true` every slice is drawn that way.
- Global batch k is the k-th chunk of B/streams samples of every stream. Process r of W owns
  streams r, r+W, ...; each of its DataLoader workers owns a subset of those and yields its
  part of every batch, and the parts are joined in the main process.
- Captions are drawn by `CaptionSampler`, augmentations seeded per sample: both from (seed,
  epoch, batch, stream), never from a worker's RNG history.

Resuming after b batches of an epoch replays each stream's first b chunks without decoding
images (reading tar bytes only), then continues exactly where the interrupted run was.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Any

import torch
import torch.utils.data

from ..data.schema import IMAGE_MEMBER, SHARD_NAME, SIZES_FILE
from ..errors import TaxoclipError
from .captions import augmentation_seeds, batch_generator

_SHARD_ORDER, _RESAMPLE, _SHUFFLE = 11, 12, 13
VAL_EPOCH = 1_000_000
"""The `epoch` used for validation draws (captions), so they are the same after every epoch."""


class DataError(TaxoclipError):
    """Unreadable or missing shards, or samples without the members training needs."""


# -- finding shards ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardSet:
    """The shards of one split and, when a `sizes.json` was found, their sample counts."""

    urls: tuple[str, ...]
    sizes: tuple[int, ...] | None = None

    @property
    def total(self) -> int | None:
        return sum(self.sizes) if self.sizes is not None else None


def find_shards(spec: str) -> ShardSet:
    """Shards of a split directory (`shard-*.tar` + `sizes.json`), or of a pattern/URL list.

    Patterns use webdataset's syntax: brace ranges (`shard-{000000..000099}.tar`) and `::`
    between several. Sample counts come from a `sizes.json` beside the shards, when there is one.
    """
    from webdataset.shardlists import expand_urls

    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        urls = sorted(str(p) for p in path.glob("*.tar"))
        if not urls:
            raise DataError(f"{spec}: no .tar shards in this directory (expected {SHARD_NAME.format(index=0)} ...)")
        sizes_file = path / SIZES_FILE
    else:
        urls = expand_urls(spec)
        local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
        missing = [u for u in local if not Path(u).is_file()]
        if missing:
            raise DataError(f"no such shard: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        sizes_file = Path(os.path.dirname(urls[0])) / SIZES_FILE if len(local) == len(urls) else None
    return ShardSet(tuple(urls), _read_sizes(sizes_file, urls))


def _read_sizes(sizes_file: Path | None, urls: Sequence[str]) -> tuple[int, ...] | None:
    if sizes_file is None or not sizes_file.is_file():
        return None
    try:
        table = json.loads(sizes_file.read_text())
        return tuple(int(table[os.path.basename(u)]) for u in urls)
    except (ValueError, KeyError, TypeError, OSError):
        return None


def epoch_samples(shards: ShardSet, configured: int | None, what: str) -> int:
    """Samples per epoch: the configured number, else the total of `sizes.json`."""
    if configured:
        return configured
    if shards.total is None:
        raise DataError(f"{what}: no sizes.json beside the shards; set data.samples_per_epoch")
    return shards.total


# -- reading ---------------------------------------------------------------------------------------------
def read_shard(url: str, wanted: Callable[[str], bool] | None = None) -> Iterator[dict]:
    """Samples of one shard as webdataset dicts (lower-cased member keys -> bytes)."""
    from webdataset.tariterators import tarfile_samples

    try:
        yield from tarfile_samples([{"url": url}], select_files=wanted)
    except (OSError, ValueError, EOFError) as err:  # tarfile errors derive from these
        raise DataError(f"cannot read shard {url}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


@dataclass(frozen=True)
class Slice:
    """Samples i of a shard with i % every == offset."""

    shard: int
    offset: int = 0
    every: int = 1


def stream_slices(n_shards: int, streams: int, stream: int, seed: int, epoch: int,
                  resampled: bool) -> tuple[list[Slice], Iterator[Slice]]:
    """The slices stream `stream` reads in `epoch`: its share of the permutation (none when
    `resampled`), then an endless sequence of slices drawn with replacement."""
    every = max(1, math.ceil(streams / n_shards))
    order = batch_generator(seed, epoch, 0, 0, _SHARD_ORDER).permutation(n_shards)
    slices = [Slice(int(shard), offset, every) for shard in order for offset in range(every)]
    rng = batch_generator(seed, epoch, 0, stream, _RESAMPLE)
    extra = (slices[int(rng.integers(len(slices)))] for _ in repeat(None))
    return ([] if resampled else slices[stream::streams]), extra


def stream_samples(shards: ShardSet, streams: int, stream: int, seed: int, epoch: int, resampled: bool,
                   shuffle_buffer: int, wanted: Callable[[str], bool] | None = None) -> Iterator[dict]:
    """One stream's endless sample sequence for an epoch.

    Its share of the epoch comes first, shuffled through a buffer that drains completely before
    any resampled slice is read, so an epoch with balanced streams sees every sample exactly once.
    """
    from webdataset.filters import _shuffle

    share, extra = stream_slices(len(shards.urls), streams, stream, seed, epoch, resampled)

    def read(slices: Iterator[Slice]) -> Iterator[dict]:
        empty_run = 0
        for piece in slices:
            found = False
            for index, sample in enumerate(read_shard(shards.urls[piece.shard], wanted)):
                if index % piece.every == piece.offset:
                    found = True
                    yield sample
            empty_run = 0 if found else empty_run + 1
            if empty_run > 2 * len(shards.urls) * piece.every:
                raise DataError(f"no samples in the shards of {shards.urls[0]} ...")

    def shuffled(samples: Iterator[dict], part: int) -> Iterator[dict]:
        if shuffle_buffer <= 1:
            return samples
        state = int(batch_generator(seed, epoch, part, stream, _SHUFFLE).integers(2**62))
        return _shuffle(samples, bufsize=shuffle_buffer, initial=shuffle_buffer, rng=random.Random(state))

    return chain(shuffled(read(iter(share)), 0), shuffled(read(extra), 1))


def decode_images(samples: Sequence[dict], transform: Callable, seeds: Sequence[int] | None,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """Decode and transform the `jpg` of each sample into one [n, 3, H, W] tensor (or into `out`).

    With `seeds`, each sample's random augmentation runs with the CPU generator seeded by its
    own seed; the generator's previous state is restored afterwards.
    """
    from PIL import Image

    saved = torch.get_rng_state() if seeds is not None else None
    try:
        for i, sample in enumerate(samples):
            data = sample.get(IMAGE_MEMBER)
            if data is None:
                raise DataError(f"sample {sample.get('__key__')} in {sample.get('__url__')} has no {IMAGE_MEMBER} member")
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image = image.convert("RGB")
            except OSError as err:
                reason = str(err).split(" <")[0] or type(err).__name__
                raise DataError(f"sample {sample.get('__key__')} in {sample.get('__url__')}: bad image ({reason})") from None
            if seeds is not None:
                torch.default_generator.manual_seed(seeds[i])  # the CPU generator only, cheaply
            pixels = transform(image)
            if out is None:
                out = torch.empty((len(samples), *pixels.shape), dtype=pixels.dtype)
            out[i] = pixels
    finally:
        if saved is not None:
            torch.set_rng_state(saved)
    return out


Targets = Callable[[Sequence[dict], int, int, int], Any]
"""(samples, epoch, batch, stream) -> a tensor of targets (caption tokens, or class labels)."""


# -- training batches ----------------------------------------------------------------------------------
class TrainBatches(torch.utils.data.IterableDataset):
    """Iterable dataset of one process's parts of the global batches `start..batches-1` of an epoch.

    With W workers, worker w yields, for every batch, the samples of its streams; the
    DataLoader hands parts out round-robin, so W consecutive parts make one local batch.
    """

    def __init__(self, shards: ShardSet, *, streams: int, global_batch: int, rank: int, world_size: int,
                 seed: int, shuffle_buffer: int, resampled: bool, transform: Callable, targets: Targets,
                 wanted: Callable[[str], bool] | None = None) -> None:
        self.shards, self.streams, self.seed = shards, streams, seed
        self.chunk = global_batch // streams
        self.rank_streams = list(range(rank, streams, world_size))
        self.shuffle_buffer, self.resampled = shuffle_buffer, resampled
        self.transform, self.targets, self.wanted = transform, targets, wanted
        self.epoch, self.start, self.batches = 0, 0, 0

    def set_epoch(self, epoch: int, start: int, batches: int) -> None:
        self.epoch, self.start, self.batches = epoch, start, batches

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        info = torch.utils.data.get_worker_info()
        mine = self.rank_streams[info.id::info.num_workers] if info else self.rank_streams
        readers = {s: stream_samples(self.shards, self.streams, s, self.seed, self.epoch, self.resampled,
                                     self.shuffle_buffer, self.wanted) for s in mine}
        for reader in readers.values():  # replay the batches done before a resume, without decoding
            _consume(reader, self.start * self.chunk)
        for batch in range(self.start, self.batches):
            images, targets = None, []
            for position, (stream, reader) in enumerate(readers.items()):
                samples = list(islice(reader, self.chunk))
                seeds = augmentation_seeds(self.seed, self.epoch, batch, stream, len(samples))
                part = decode_images(samples, self.transform, seeds)
                if images is None:  # one tensor for all of this worker's streams, filled in place
                    images = torch.empty((len(readers) * self.chunk, *part.shape[1:]), dtype=part.dtype)
                images[position * self.chunk:(position + 1) * self.chunk] = part
                targets.append(self.targets(samples, self.epoch, batch, stream))
            yield images, torch.cat(targets)


def _consume(iterator: Iterator, n: int) -> None:
    for _ in islice(iterator, n):
        pass


# -- validation batches --------------------------------------------------------------------------------
class ValBatches(torch.utils.data.IterableDataset):
    """Iterable dataset of this process's fixed-size validation batches, in shard order.

    Global validation batch j goes to process j mod W; that process's i-th batch to worker
    i mod (workers), so the DataLoader's round-robin returns them in order.
    """

    def __init__(self, shards: ShardSet, *, batch_size: int, rank: int, world_size: int, limit: int | None,
                 transform: Callable, targets: Targets, wanted: Callable[[str], bool] | None = None) -> None:
        self.shards, self.batch_size, self.rank, self.world_size = shards, batch_size, rank, world_size
        self.limit, self.transform, self.targets, self.wanted = limit, transform, targets, wanted

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        samples = (s for url in self.shards.urls for s in read_shard(url, self.wanted))
        if self.limit:
            samples = islice(samples, self.limit)
        batch_index = 0
        while True:
            batch = list(islice(samples, self.batch_size))
            if len(batch) < 2:  # a contrastive batch needs two samples
                return
            mine = batch_index % self.world_size == self.rank
            local_index = batch_index // self.world_size
            if mine and local_index % workers == worker:
                images = decode_images(batch, self.transform, None)
                yield images, self.targets(batch, VAL_EPOCH, batch_index, 0)
            batch_index += 1


# -- loaders -------------------------------------------------------------------------------------------
def loader(dataset: Any, workers: int) -> Any:
    """A DataLoader that passes the dataset's parts through unchanged (they are batched already)."""
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                       persistent_workers=False, pin_memory=False)


def joined_batches(parts: Any, per_batch: int) -> Iterator[tuple[Any, Any]]:
    """Join every `per_batch` consecutive parts (one per worker) into one local batch."""
    iterator = iter(parts)
    while True:
        group = list(islice(iterator, per_batch))
        if not group:
            return
        yield torch.cat([g[0] for g in group]), torch.cat([g[1] for g in group])


def member_filter(members: Sequence[str]) -> Callable[[str], bool]:
    """A tar member-name predicate keeping only the (lower-cased) members a run needs."""
    suffixes = tuple(f".{m.lower()}" for m in members)

    def wanted(name: str) -> bool:
        return name.lower().endswith(suffixes)

    return wanted
