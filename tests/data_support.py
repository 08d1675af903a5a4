"""Helpers for the data-build tests: a small real-photo subset, a real HTTP server, shard readers."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import yaml
from PIL import Image

from taxoclip.data import schema
from taxoclip.taxonomy.taxon import RANKS, Taxon

EXPECTED_KEYS = {schema.member_key(m) for m in schema.MEMBERS}


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def catalog_taxon(row: dict) -> Taxon:
    return Taxon.from_ranks({rank: row[rank] for rank in RANKS}, common=row["common_name"])


def assert_shards_match_catalog(out: Path) -> pd.DataFrame:
    """Every sample of every split: exactly the 11 members, texts equal to `schema.sample_texts` of
    the catalog lineage, a 224x224 JPEG; and the catalog lists exactly the samples written."""
    catalog = pd.read_parquet(out / schema.CATALOG_PARQUET)
    csv = pd.read_csv(out / schema.CATALOG_CSV, dtype=str, keep_default_na=False)
    assert list(catalog.columns) == [*schema.CATALOG_COLUMNS, *schema.CATALOG_EXTRA_COLUMNS]
    assert csv["id"].tolist() == catalog["id"].tolist()
    rows = {(r["split"], r["id"]): r for r in catalog.to_dict("records")}
    seen = set()
    for split in schema.SPLITS:
        if not (out / split).is_dir():
            continue
        sizes = json.loads((out / split / schema.SIZES_FILE).read_text())
        samples = read_split(out, split)
        assert sum(sizes.values()) == len(samples)
        for sample in samples:
            keys = {k for k in sample if not k.startswith("__")}
            assert keys == EXPECTED_KEYS, sample["__key__"]
            row = rows[(split, sample["__key__"])]
            assert Path(sample["__url__"]).name == Path(row["shard"]).name
            for member, text in schema.sample_texts(catalog_taxon(row)).items():
                assert sample[schema.member_key(member)].decode("utf-8") == text, (member, row["raw_name"])
            assert jpeg_size(sample["jpg"]) == (224, 224)
            seen.add((split, sample["__key__"]))
    assert seen == set(rows)
    train, val = set(catalog.loc[catalog.split == "train", "id"]), set(catalog.loc[catalog.split == "val", "id"])
    small = set(catalog.loc[catalog.split == "train_small", "id"])
    assert not train & val and small <= train
    return catalog



SPECIES = (
    "Corylus avellana", "Zea mays", "Papaver rhoeas", "Amanita rubescens", "Hypholoma fasciculare",
    "Vulpes vulpes", "Meles meles", "Lynx lynx", "Erithacus rubecula", "Ciconia ciconia", "Carduelis spinus",
    "Sciurus vulgaris",
)
PER_SPECIES = 4
EXCLUDED_SPECIES = "Vulpes vulpes"


def photo_subset(labels: pd.DataFrame, per_species: int = PER_SPECIES) -> pd.DataFrame:
    """`per_species` rows of labels.csv for each of SPECIES, in a fixed order."""
    rows = labels[labels["species_label"].isin(SPECIES)].sort_values(["species_label", "filepath"])
    subset = rows.groupby("species_label", sort=True).head(per_species).reset_index(drop=True)
    assert subset["species_label"].nunique() == len(SPECIES)
    return subset


def resized_copy(path: str | Path, target: Path, scale: float = 0.5, quality: int = 80) -> Path:
    """A smaller re-encoded copy of a photo (a near duplicate with different bytes)."""
    with Image.open(path) as image:
        small = image.convert("RGB").resize((int(image.width * scale), int(image.height * scale)))
    target.parent.mkdir(parents=True, exist_ok=True)
    small.save(target, format="JPEG", quality=quality)
    return target


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_split(out: Path, split: str) -> list[dict]:
    """Every sample of a split, read back with the webdataset library."""
    import webdataset as wds

    urls = sorted(str(p) for p in (out / split).glob("shard-*.tar"))
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    return list(dataset)


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


class PhotoServer:
    """A real HTTP server on 127.0.0.1 serving photos, errors and slow answers.

    Paths: /img/NAME (the photo), /missing/NAME (404), /error/NAME (500 always),
    /flaky/NAME (503 once, then the photo), /slow/NAME (answers after `slow_s`),
    /html/NAME (a 200 HTML page, not an image). Every request is logged with its arrival time.
    """

    def __init__(self, photos: dict[str, Path], slow_s: float = 2.0, delay_s: float = 0.0):
        self.photos = photos
        self.slow_s = slow_s
        self.delay_s = delay_s
        self.log: list[tuple[float, str]] = []
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server API)
                with server.lock:
                    server.log.append((time.monotonic(), self.path))
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                    first_time = self.path not in server.seen
                    server.seen.add(self.path)
                try:
                    server.answer(self, first_time)
                finally:
                    with server.lock:
                        server.active -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, handler: BaseHTTPRequestHandler, first_time: bool) -> None:
        _, kind, name = handler.path.split("/", 2)
        if self.delay_s:
            time.sleep(self.delay_s)
        if kind == "missing" or name not in self.photos:
            return self.send(handler, 404, b"not found", "text/plain")
        if kind == "error":
            return self.send(handler, 500, b"boom", "text/plain")
        if kind == "flaky" and first_time:
            return self.send(handler, 503, b"busy", "text/plain")
        if kind == "html":
            return self.send(handler, 200, b"<html><body>not an image</body></html>", "text/html")
        if kind == "slow":
            time.sleep(self.slow_s)
        return self.send(handler, 200, self.photos[name].read_bytes(), "image/jpeg")

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout under test)

    def __enter__(self) -> PhotoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
