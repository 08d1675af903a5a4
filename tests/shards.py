"""Writing real webdataset shards from the shared photos, in the layout `taxoclip data build` writes.

    OUT/<split>/shard-000000.tar ...   members of `taxoclip.data.schema` (jpg + 10 texts)
    OUT/<split>/sizes.json             {"shard-000000.tar": count, ...}

Used by the training tests and benchmarks until (and besides) the data stage's own builder.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pandas as pd
from PIL import Image

from taxoclip.data.schema import IMAGE_MEMBER, SHARD_NAME, SIZES_FILE, sample_texts
from taxoclip.taxonomy import Taxon


def jpeg_bytes(path: str, size: int) -> bytes:
    """The photo squashed to size x size with bicubic resampling (as the original shards were)."""
    with Image.open(path) as image:
        image = image.convert("RGB").resize((size, size), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_split(rows: pd.DataFrame, split_dir: Path, image_size: int, per_shard: int,
                extra_txt: str | None = None) -> Path:
    """Write `rows` (labels.csv rows with an absolute `path`) as shards of `per_shard` samples.

    `extra_txt` also writes that caption type as a plain `txt` member (what open_clip's own
    trainer reads), for side-by-side benchmarks.
    """
    from webdataset import TarWriter

    split_dir.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    records = rows.to_dict("records")
    for index, start in enumerate(range(0, len(records), per_shard)):
        name = SHARD_NAME.format(index=index)
        chunk = records[start:start + per_shard]
        with TarWriter(str(split_dir / name)) as sink:
            for row in chunk:
                taxon = Taxon.from_ranks(row, common=row.get("common_name", ""))
                texts = sample_texts(taxon)
                key = uuid.uuid5(uuid.NAMESPACE_URL, row["filepath"]).hex
                sample = {"__key__": key, IMAGE_MEMBER: jpeg_bytes(row["path"], image_size)}
                sample.update({member: text.encode("utf-8") for member, text in texts.items()})
                if extra_txt:
                    sample["txt"] = texts[f"{extra_txt}.txt"].encode("utf-8")
                sink.write(sample)
        sizes[name] = len(chunk)
    (split_dir / SIZES_FILE).write_text(json.dumps(sizes, indent=1))
    return split_dir


def write_dataset(labels: pd.DataFrame, out: Path, n_train: int, n_val: int, image_size: int = 64,
                  per_shard: int = 16, seed: int = 0, extra_txt: str | None = None) -> Path:
    """A small dataset directory with `train` and `val` splits drawn from the shared photos."""
    picked = labels.sample(n=n_train + n_val, random_state=seed).reset_index(drop=True)
    write_split(picked.iloc[:n_train], out / "train", image_size, per_shard, extra_txt)
    write_split(picked.iloc[n_train:], out / "val", image_size, per_shard, extra_txt)
    return out
