"""The one `--model` syntax.

| spec                                  | meaning                                              |
|---------------------------------------|------------------------------------------------------|
| `bioclip`, `bioclip-2` (`@REV`)       | official checkpoints + their tree-of-life banks      |
| `hf-hub:org/name` (`@REV`)            | any open_clip repo on the Hugging Face Hub           |
| `/path/dir` or `local-dir:/path/dir`  | a directory in the hub layout (incl. our checkpoints)|
| `/path/run` (a training run)          | its latest checkpoint (`checkpoints/...`)            |
| `ARCH`                                | an open_clip architecture, random init               |
| `ARCH:TAG`                            | an open_clip architecture with a pretrained tag      |
| `ARCH:/path/weights.{pt,bin,safetensors}` | an architecture with a weights file              |
| `mini`                                | the model bundled with taxoclip (when installed)     |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import TaxoclipError
from .registry import BUNDLED_MODELS, NAMED_MODELS

HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed `--model` value."""

    raw: str
    kind: str  # "named" | "hf-hub" | "local-dir" | "open_clip" | "bundled"
    name: str  # alias, repo id, directory, or architecture
    revision: str | None = None
    pretrained: str | None = None  # open_clip tag or weights file (kind "open_clip")


def _split_revision(text: str) -> tuple[str, str | None]:
    if "@" in text:
        name, revision = text.rsplit("@", 1)
        if not name or not revision:
            raise TaxoclipError(f"bad model spec {text!r}: expected NAME@REVISION")
        return name, revision
    return text, None


def parse_model_spec(raw: str) -> ModelSpec:
    """Parse a `--model` string; raises TaxoclipError with the accepted forms on nonsense."""
    text = str(raw).strip()
    if not text:
        raise TaxoclipError("empty --model; try `bioclip`, `hf-hub:org/name`, a directory, or ARCH:TAG")
    if text.startswith(HF_PREFIX):
        repo, revision = _split_revision(text[len(HF_PREFIX):])
        if repo.count("/") != 1:
            raise TaxoclipError(f"bad hub id {repo!r} in --model {raw!r}: expected hf-hub:org/name")
        return ModelSpec(raw, "hf-hub", repo, revision)
    if text.startswith(LOCAL_PREFIX):
        return ModelSpec(raw, "local-dir", str(Path(os.path.expanduser(text[len(LOCAL_PREFIX):]))))
    alias, revision = _split_revision(text) if not os.path.exists(text) else (text, None)
    if alias in NAMED_MODELS:
        return ModelSpec(raw, "named", alias, revision)
    if alias in BUNDLED_MODELS:
        return ModelSpec(raw, "bundled", alias)
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return ModelSpec(raw, "local-dir", str(path))
    if path.is_file():
        return ModelSpec(raw, "open_clip", "", pretrained=str(path))
    if ":" in text:
        arch, pretrained = text.split(":", 1)
        return ModelSpec(raw, "open_clip", arch, pretrained=os.path.expanduser(pretrained) or None)
    if "/" in text or text.startswith("."):
        raise TaxoclipError(f"--model {raw!r}: no such file or directory")
    return ModelSpec(raw, "open_clip", text)
