"""Fetch the images of URL sources into a content cache, politely and resumably.

- At most `connections` requests in flight (a thread pool; the work is network-bound).
- A per-host rate limit: request starts to one host are spaced by 1 / `per_host_rate` seconds.
- Retries with exponential backoff and jitter on connection errors, timeouts, 408/425/429 and 5xx,
  honouring `Retry-After`; other 4xx answers fail at once.
- Every failure is recorded (url, HTTP status, error, attempts); nothing aborts the batch.

The cache maps a URL to `<cache>/<sha256(url)[:2]>/<sha256(url)>`; files are written to a
temporary name and renamed, so a cached file is always complete. A URL already in the cache is
not fetched again, which makes an interrupted download resume where it stopped.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

from .config import DownloadConfig

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524})
MAX_RETRY_AFTER = 60.0
_CHUNK = 1 << 16


@dataclass(frozen=True)
class DownloadFailure:
    url: str
    status: int | None
    error: str
    attempts: int


class DownloadError(Exception):
    def __init__(self, message: str, status: int | None = None, retry: bool = False, wait_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry = retry
        self.wait_s = wait_s


def cache_path(cache_dir: str | os.PathLike, url: str) -> Path:
    """Where a URL's bytes live in the download cache."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
    return Path(cache_dir) / digest[:2] / digest


class HostRateLimiter:
    """Spaces request starts to each host by 1/rate seconds (rate 0: no limit). Thread-safe."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_start: dict[str, float] = {}
        self.lock = threading.Lock()

    def wait(self, host: str) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start.get(host, now))
            self.next_start[host] = start + self.interval
        if start > now:
            time.sleep(start - now)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        return min(MAX_RETRY_AFTER, max(0.0, parsedate_to_datetime(value).timestamp() - time.time()))
    except (TypeError, ValueError):
        return None


class Downloader:
    """Fetches URLs into the cache under `DownloadConfig`'s limits."""

    def __init__(self, config: DownloadConfig, cache_dir: str | os.PathLike):
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.limiter = HostRateLimiter(config.per_host_rate)

    def cached(self, url: str) -> Path | None:
        path = cache_path(self.cache_dir, url)
        return path if path.is_file() else None

    def _request_once(self, url: str) -> bytes:
        self.limiter.wait(urlsplit(url).hostname or "")
        request = urllib.request.Request(url, headers={"User-Agent": self.config.user_agent})
        deadline = time.monotonic() + 4 * self.config.timeout
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.config.max_bytes:
                    raise DownloadError(f"{declared} bytes is over the {self.config.max_bytes}-byte limit",
                                        status=response.status)
                chunks, size = [], 0
                while chunk := response.read(_CHUNK):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self.config.max_bytes:
                        raise DownloadError(f"over the {self.config.max_bytes}-byte limit", status=response.status)
                    if time.monotonic() > deadline:
                        raise DownloadError("response too slow (total time limit)", retry=True)
                if declared and declared.isdigit() and size < int(declared):
                    raise DownloadError(f"response cut short ({size} of {declared} bytes)", retry=True)
                if not size:
                    raise DownloadError("empty response", status=response.status)
                return b"".join(chunks)
        except urllib.error.HTTPError as err:
            retry = err.code in RETRY_STATUSES
            raise DownloadError(f"HTTP {err.code} {err.reason}", status=err.code, retry=retry,
                                wait_s=_retry_after(err.headers.get("Retry-After") if err.headers else None)) from None
        except TimeoutError:
            raise DownloadError(f"timed out after {self.config.timeout:g} s", retry=True) from None
        except urllib.error.URLError as err:
            raise DownloadError(f"connection failed: {err.reason}", retry=True) from None
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(f"connection failed: {err!r}", retry=True) from None

    def fetch(self, url: str) -> Path:
        """Download one URL into the cache (or find it there); raises DownloadError with `.attempts`."""
        path = cache_path(self.cache_dir, url)
        if path.is_file():
            return path
        attempt = 0
        while True:
            attempt += 1
            try:
                data = self._request_once(url)
                break
            except DownloadError as err:
                if not err.retry or attempt > self.config.retries:
                    err.attempts = attempt  # type: ignore[attr-defined]
                    raise
                pause = self.config.backoff * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
                time.sleep(max(pause, err.wait_s or 0.0))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.part")
        partial.write_bytes(data)
        os.replace(partial, path)
        return path

    def fetch_all(self, urls: Iterable[str], on_done: Callable[[str, Path | None], None] | None = None,
                  ) -> tuple[dict[str, Path], list[DownloadFailure]]:
        """Fetch many URLs with at most `connections` in flight; returns {url: path} and the failures."""
        fetched: dict[str, Path] = {}
        failures: list[DownloadFailure] = []
        in_flight: dict[Future, str] = {}
        limit = self.config.connections

        def settle(done: set[Future]) -> None:
            for future in done:
                url = in_flight.pop(future)
                try:
                    fetched[url] = future.result()
                    if on_done:
                        on_done(url, fetched[url])
                except DownloadError as err:
                    failures.append(DownloadFailure(url, err.status, str(err), getattr(err, "attempts", 1)))
                    if on_done:
                        on_done(url, None)

        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="download") as pool:
            for url in urls:
                if len(in_flight) >= 2 * limit:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    settle(done)
                in_flight[pool.submit(self.fetch, url)] = url
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                settle(done)
        return fetched, failures


def clean_partial_downloads(cache_dir: str | os.PathLike) -> None:
    """Remove `.part` files left by an interrupted run."""
    root = Path(cache_dir)
    if root.is_dir():
        for partial in root.glob("*/*.part"):
            partial.unlink(missing_ok=True)
