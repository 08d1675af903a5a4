"""Writing models in the hub layout: what the trainer saves is what `--model DIR` loads."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import layout


def save_checkpoint(model: Any, directory: str | os.PathLike, model_cfg: dict, preprocess_cfg: dict,
                    meta: dict | None = None, train_state: dict | None = None) -> Path:
    """Save `model` as `directory/{open_clip_config.json, open_clip_model.safetensors, taxoclip.json}`.

    Written to a temporary sibling and renamed into place, so a kill never leaves half a checkpoint.
    `train_state` (tensors and plain values only) goes to `train_state.pt` for resuming.
    """
    import torch
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    config = {"model_cfg": model_cfg, "preprocess_cfg": _jsonable(preprocess_cfg)}
    (tmp / layout.CONFIG_FILE).write_text(json.dumps(config, indent=2))
    unwrapped = getattr(model, "module", model)
    save_model(unwrapped, str(tmp / layout.WEIGHTS_SAFETENSORS))
    full_meta = {"format": layout.CHECKPOINT_FORMAT, "format_version": layout.CHECKPOINT_FORMAT_VERSION,
                 "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(meta or {})}
    (tmp / layout.TAXOCLIP_META).write_text(json.dumps(_jsonable(full_meta), indent=2))
    if train_state is not None:
        torch.save(train_state, tmp / layout.TRAIN_STATE)
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    return directory


def load_train_state(directory: str | os.PathLike) -> dict | None:
    """The resumable training state of a checkpoint, loaded without running any pickled code."""
    import torch

    path = Path(directory) / layout.TRAIN_STATE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
