"""Images per second per core for decode + resize + shard write, against a plain PIL + webdataset loop.

Both loops run in this one process (one core) over the same photos, writing the same 11-member
samples to tars with webdataset's ShardWriter:

- reference: `Image.open(...).convert("RGB").resize((224, 224), BICUBIC)` (the original's squash),
  JPEG quality 95, the 10 texts — the simplest correct loop.
- taxoclip: `shards.write_part`, exactly what a build worker runs: read, JPEG draft decode, EXIF
  orientation, RGB, resize + centre crop, JPEG 95, texts from `schema.sample_texts`, ShardWriter,
  fsync, `done.json`, atomic rename.

Two image sets: the shared photos as they are (about 500x333), and the same photos re-saved at
2000 px on the long side (camera-sized, where JPEG draft decoding matters). Target: >= 200
images/s per core. It also times the dedup fingerprint per core, and the single-process plan steps
(near-duplicate search, splits) on 1M synthetic records.
Run: `python benchmarks/bench_data.py [--images 600] [--repeat 3] [--plan-records 1000000]`.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO.parent / "shared" / "data" / "nature-quizzer-train"


def load_samples(count: int) -> list[dict]:
    import pandas as pd

    labels = pd.read_csv(PHOTOS / "labels.csv", dtype=str, keep_default_na=False).head(count)
    samples = []
    for row in labels.to_dict("records"):
        sample = {"id": Path(row["filepath"]).stem, "location": str(PHOTOS / row["filepath"]), "offset": -1,
                  "length": -1, "common_name": row["common_name"]}
        sample.update({rank: row[rank] for rank in ("kingdom", "phylum", "class", "order", "family", "genus",
                                                    "species")})
        samples.append(sample)
    return samples


def enlarge(samples: list[dict], folder: Path, long_side: int = 2000) -> list[dict]:
    """Copies of the photos upscaled to `long_side` px (quality 90), standing in for camera images."""
    from PIL import Image

    out = []
    for sample in samples:
        with Image.open(sample["location"]) as image:
            scale = long_side / max(image.size)
            big = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)),
                                              Image.Resampling.BICUBIC)
        path = folder / f"{sample['id']}.jpg"
        big.save(path, quality=90)
        out.append(dict(sample, location=str(path)))
    return out


def reference_loop(samples: list[dict], folder: Path) -> None:
    import webdataset as wds
    from PIL import Image

    from taxoclip.data import schema
    from taxoclip.data.shards import sample_taxon

    with wds.ShardWriter(str(folder / "ref-%06d.tar"), maxcount=100_000, verbose=0) as writer:
        for sample in samples:
            image = Image.open(sample["location"]).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=95)
            texts = schema.sample_texts(sample_taxon(sample))
            writer.write({"__key__": sample["id"], "jpg": buffer.getvalue(),
                          **{name: text.encode() for name, text in texts.items()}})


def taxoclip_loop(samples: list[dict], folder: Path) -> None:
    from taxoclip.data.shards import write_part

    write_part({"split": "train", "index": 0, "parts_root": str(folder / "parts"), "samples": samples,
                "image": {"size": 224, "resize": "crop", "jpeg_quality": 95, "pad_color": (0, 0, 0)},
                "max_samples": 100_000, "max_bytes": 3e9})


def timed(function, samples: list[dict], repeat: int) -> tuple[float, float]:
    """Median (images per CPU-second of this process, images per wall second) over `repeat` runs,
    each into a fresh folder. CPU time is the per-core figure; wall time also counts waiting for
    a core on a shared machine and for the disk."""
    cpu_rates, wall_rates = [], []
    for _ in range(repeat):
        folder = Path(tempfile.mkdtemp(prefix="bench-data-"))
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            function(samples, folder)
            cpu_rates.append(len(samples) / (time.process_time() - cpu))
            wall_rates.append(len(samples) / (time.perf_counter() - wall))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return statistics.median(cpu_rates), statistics.median(wall_rates)


def fingerprint_rate(samples: list[dict], repeat: int) -> float:
    """Images per CPU-second of the dedup fingerprint (read, sha256, draft decode, EXIF, pHash)."""
    from taxoclip.data.dedup import fingerprint_records

    records = [(s["id"], s["location"], -1, -1) for s in samples]
    rates = []
    for _ in range(repeat):
        started = time.process_time()
        fingerprint_records(records)
        rates.append(len(records) / (time.process_time() - started))
    return statistics.median(rates)


def plan_at_scale(count: int) -> None:
    """The global, single-process steps of a plan over `count` synthetic records: near-duplicate
    search (t = 6, 1% planted copies) and split assignment."""
    import numpy as np
    import pandas as pd

    from taxoclip.data.config import DedupConfig
    from taxoclip.data.dedup import find_duplicates
    from taxoclip.data.splits import assign_splits, shard_order

    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=count, dtype=np.int64).astype(np.uint64)
    planted = rng.choice(count, size=count // 50, replace=False)
    hashes[planted[: count // 100]] = hashes[planted[count // 100:]] ^ np.uint64(0b1010010)
    ids = [f"{i:08x}-0000-5000-8000-000000000000" for i in range(count)]
    digests = [f"{i:064x}" for i in range(count)]
    started = time.perf_counter()
    removed = find_duplicates(ids, digests, hashes.tolist(), DedupConfig())
    dedup_s = time.perf_counter() - started
    started = time.perf_counter()
    frame = pd.DataFrame({"id": ids, "source": "s"})
    assign_splits(frame, 17, {"s": 0.05}, {"s": 0.1})
    shard_order(ids, 17)
    split_s = time.perf_counter() - started
    print(f"plan steps at scale, {count:,} synthetic records: near-duplicate search {dedup_s:.1f} s "
          f"({len(removed):,} found of {count // 100:,} planted), splits + shard order {split_s:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--large-images", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plan-records", type=int, default=1_000_000)
    args = parser.parse_args()
    import webdataset  # noqa: F401  (import cost outside the timings)

    samples = load_samples(args.images)
    for sample in samples:  # warm the page cache so both loops read from memory
        Path(sample["location"]).read_bytes()
    with tempfile.TemporaryDirectory(prefix="bench-data-large-") as large_dir:
        large = enlarge(samples[: args.large_images], Path(large_dir))
        print(f"decode + resize to 224 + JPEG 95 + 11-member webdataset sample, 1 process (= 1 core), "
              f"median of {args.repeat}")
        for label, chosen in ((f"shared photos (~500x333), {len(samples)} images", samples),
                              (f"2000 px photos, {len(large)} images", large)):
            ours, ours_wall = timed(taxoclip_loop, chosen, args.repeat)
            reference, reference_wall = timed(reference_loop, chosen, args.repeat)
            verdict = "meets" if ours >= 200 else "misses"
            print(f"{label}:")
            print(f"  taxoclip write_part       {ours:8.1f} images/s per core ({ours_wall:.1f}/s wall)  "
                  f"({verdict} the 200 target)")
            print(f"  reference PIL+webdataset  {reference:8.1f} images/s per core ({reference_wall:.1f}/s wall)")
            print(f"  ratio (ours / reference)  {ours / reference:8.2f}x")
            print(f"  fingerprint for dedup     {fingerprint_rate(chosen, args.repeat):8.1f} images/s per core")
    if args.plan_records:
        plan_at_scale(args.plan_records)


if __name__ == "__main__":
    main()
