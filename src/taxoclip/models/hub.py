"""Fetching files from the Hugging Face Hub cache, offline first, with one clear error.

Files are looked up in the local cache first. Only when one is missing do we check, once per
process and within two seconds, whether the hub can be reached at all; if it cannot, the
hub client is put in offline mode (so that open_clip never retries five times) and the
caller gets a one-line `MissingFilesError` naming the file and how to provide it.
"""

from __future__ import annotations

import os
import re
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from ..errors import MissingFilesError

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_cache_dir() -> Path:
    """The hub cache in force now: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _offline_requested() -> bool:
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TAXOCLIP_OFFLINE")
    return any(os.environ.get(flag, "").lower() in ("1", "true", "yes", "on") for flag in flags)


@cache
def _probe(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def hub_reachable() -> bool:
    """Whether downloads may be tried; when not, switches the hub client to offline mode."""
    import huggingface_hub.constants as hf_constants

    if _offline_requested() or hf_constants.HF_HUB_OFFLINE:
        reachable = False
    else:
        endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
        reachable = _probe(endpoint.hostname or "huggingface.co", endpoint.port or 443)
    if not reachable:
        hf_constants.HF_HUB_OFFLINE = True
    return reachable


def how_to_provide(repo: str, repo_type: str = "model") -> str:
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    return (
        f"on a connected machine run `hf download {repo}{kind}` and copy its Hugging Face cache here "
        f"(point HF_HOME or HF_HUB_CACHE at it; now {hub_cache_dir()}), or pass a local directory"
    )


def hub_file(repo: str, filename: str, revision: str | None = None, repo_type: str = "model",
             what: str | None = None) -> Path:
    """Local path of `filename` in `repo` at `revision`, downloading only if the hub is reachable."""
    from huggingface_hub import hf_hub_download

    kwargs = dict(repo_id=repo, filename=filename, revision=revision, repo_type=repo_type,
                  cache_dir=str(hub_cache_dir()))
    try:
        return Path(hf_hub_download(**kwargs, local_files_only=True))
    except Exception:  # noqa: BLE001 - any cache miss falls through to the download path
        pass
    label = what or repo
    at = f" at revision {revision}" if revision else ""
    if not hub_reachable():
        raise MissingFilesError(
            f"{label} needs {filename} from {repo}{at}, which is not in the local cache and the "
            f"Hugging Face Hub cannot be reached: {how_to_provide(repo, repo_type)}"
        )
    try:
        return Path(hf_hub_download(**kwargs))
    except Exception as err:  # noqa: BLE001
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MissingFilesError(f"{label}: could not download {filename} from {repo}{at}: {first_line}") from None


def first_hub_file(repo: str, filenames: tuple[str, ...], revision: str | None = None,
                   repo_type: str = "model", what: str | None = None) -> Path:
    """The first of `filenames` that exists in the repo (cache first), e.g. safetensors before bin."""
    errors: list[MissingFilesError] = []
    for name in filenames:
        try:
            return hub_file(repo, name, revision, repo_type, what)
        except MissingFilesError as err:
            errors.append(err)
    raise MissingFilesError(str(errors[0]).replace(filenames[0], " or ".join(filenames), 1))


def snapshot_revision(path: Path) -> str | None:
    """The commit hash of the hub snapshot a cached file belongs to (None outside the cache)."""
    parts = Path(path).parts
    if "snapshots" in parts:
        commit = parts[parts.index("snapshots") + 1]
        if _COMMIT.match(commit):
            return commit
    return None


def blob_sha256(path: Path) -> str | None:
    """The sha256 of a cached LFS file, which the hub cache uses as the blob's name."""
    target = Path(os.path.realpath(path))
    if target.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", target.name):
        return target.name
    return None
