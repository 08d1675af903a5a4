"""taxoclip's own on-disk cache (label banks, text embeddings, file hashes)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_dir() -> Path:
    """TAXOCLIP_CACHE, else XDG_CACHE_HOME/taxoclip, else ~/.cache/taxoclip (created on demand)."""
    root = os.environ.get("TAXOCLIP_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "taxoclip")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so big weights are hashed once."""
    path = Path(path).resolve()
    stat = path.stat()
    memo_path = cache_dir() / "file-hashes.json"
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    memo[key] = digest.hexdigest()
    tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo))
    os.replace(tmp, memo_path)
    return memo[key]
