"""URL sources against a real HTTP server on 127.0.0.1: limits, retries, failures, cache, build."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from data_support import PhotoServer, assert_shards_match_catalog, photo_subset, sha256_file, write_config

from taxoclip.data.build import build
from taxoclip.data.config import DownloadConfig
from taxoclip.data.download import Downloader, cache_path


def photo_map(labels, count: int = 8) -> dict[str, Path]:
    rows = photo_subset(labels).head(count)
    return {Path(p).name: Path(p) for p in rows["path"]}


def test_downloader_limits_retries_and_records_failures(tmp_path, labels):
    photos = photo_map(labels)
    names = sorted(photos)
    with PhotoServer(photos, slow_s=1.5, delay_s=0.15) as server:
        config = DownloadConfig(connections=2, per_host_rate=0.0, retries=2, backoff=0.01, timeout=0.5)
        downloader = Downloader(config, tmp_path / "cache")
        urls = [f"{server.base}/img/{n}" for n in names[:6]]
        urls += [f"{server.base}/flaky/{names[6]}", f"{server.base}/missing/x.jpg", f"{server.base}/error/{names[0]}"]
        fetched, failures = downloader.fetch_all(urls)
        assert server.max_active == 2  # bounded parallel connections (and they were used)
        slow_url = f"{server.base}/slow/{names[1]}"
        urls.append(slow_url)
        _, slow_failures = downloader.fetch_all([slow_url])  # the server is still busy after the client gives up
        failures += slow_failures
        assert set(fetched) == set(urls[:7])  # the flaky URL succeeded on retry
        for url in urls[:7]:
            name = url.rsplit("/", 1)[1]
            assert fetched[url] == cache_path(tmp_path / "cache", url)
            assert fetched[url].read_bytes() == photos[name].read_bytes()
        failed = {f.url.split("/")[3]: f for f in failures}
        assert set(failed) == {"missing", "error", "slow"}
        assert failed["missing"].status == 404 and failed["missing"].attempts == 1  # no retry on 404
        assert failed["error"].status == 500 and failed["error"].attempts == 3  # 1 + 2 retries
        assert "timed out" in failed["slow"].error and failed["slow"].attempts == 3
        # cached URLs are not fetched again
        requests = len(server.log)
        again, _ = downloader.fetch_all(urls[:7])
        assert set(again) == set(urls[:7]) and len(server.log) == requests
        assert not list((tmp_path / "cache").glob("*/*.part"))


def test_per_host_rate_limit_spaces_requests(tmp_path, labels):
    photos = photo_map(labels, 6)
    with PhotoServer(photos) as server:
        config = DownloadConfig(connections=6, per_host_rate=10.0, retries=0)
        downloader = Downloader(config, tmp_path / "cache")
        fetched, failures = downloader.fetch_all([f"{server.base}/img/{n}" for n in sorted(photos)])
        assert len(fetched) == 6 and not failures
        arrivals = sorted(t for t, _ in server.log)
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        assert min(gaps) > 0.07  # 1/rate = 0.1 s between request starts to one host
        assert arrivals[-1] - arrivals[0] > 0.45


def test_build_from_a_csv_of_urls(tmp_path, labels):
    subset = photo_subset(labels).head(16)
    photos = {Path(p).name: Path(p) for p in subset["path"]}
    names = list(photos)
    with PhotoServer(photos, slow_s=2.0) as server:
        kinds = ["img"] * 12 + ["flaky", "missing", "error", "slow", "html"]
        rows = []
        for i, kind in enumerate(kinds):
            name = names[i % len(names)] if kind != "html" else names[13]
            row = subset[subset.path.str.endswith(name)].iloc[0]
            rows.append({"image_url": f"{server.base}/{kind}/{name}", "taxon": row["species_label"],
                         "kingdom": row["kingdom"], "license": row["license"], "creator": row["rights_holder"],
                         "common_name": row["common_name"]})
        pd.DataFrame(rows).to_csv(tmp_path / "urls.csv", index=False)
        config = write_config(tmp_path / "urls.yaml", {
            "output": "out", "workers": 2,
            "sources": [{"name": "web", "kind": "manifest", "path": "urls.csv"}],  # columns auto-detected
            "splits": {"val_fraction": 0.2, "train_small_fraction": 0.0},
            "download": {"connections": 4, "retries": 1, "backoff": 0.01, "timeout": 0.5, "per_host_rate": 0,
                         "cache_dir": "downloads"},
        })
        build(config, progress=False)
        requests_first = len(server.log)
        out = tmp_path / "out"
        catalog = assert_shards_match_catalog(out)
        failures = pd.read_csv(out / "reports" / "failures.csv", keep_default_na=False)
        kind_of = failures["location"].str.split("/").str[3]
        errors = dict(zip(kind_of, failures["error"]))
        assert set(errors) == {"missing", "error", "slow", "html"}
        assert errors["missing"].startswith("HTTP 404") and "1 attempt)" in errors["missing"]
        assert errors["error"].startswith("HTTP 500") and "2 attempts" in errors["error"]
        assert "timed out" in errors["slow"]
        assert dict(zip(kind_of, failures["stage"]))["html"] == "read"  # fetched fine, not an image
        # the good URLs (12 + the flaky one) are in, with their provenance and their exact bytes
        images = catalog[catalog.split != "train_small"]
        removed = pd.read_csv(out / "reports" / "removed.csv", keep_default_na=False)
        assert len(images) + len(removed) == len(kinds)
        assert set(removed.loc[removed.reason == "failed", "source_id"]) == set(failures["source_id"])
        by_url = dict(zip(images["source_id"], images.to_dict("records")))
        for row in rows[:13]:
            if row["image_url"] in by_url:
                got = by_url[row["image_url"]]
                name = row["image_url"].rsplit("/", 1)[1]
                assert got["sha256"] == sha256_file(photos[name])
                assert (got["license"], got["rights_holder"]) == (row["license"], row["creator"])
                assert got["source_url"] == row["image_url"]
        # rebuilding from scratch reuses the download cache: only the failed URLs are asked again
        started = time.monotonic()
        build(config, force=True, progress=False)
        asked_again = {path.split("/")[1] for _, path in server.log[requests_first:]}
        assert asked_again <= {"missing", "error", "slow"}, asked_again
        assert time.monotonic() - started < 60
