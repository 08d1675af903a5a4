"""Where a run keeps its checkpoints, and the training state that makes `--resume` exact.

`RUN/checkpoints/step-XXXXXXXX/` (every N steps, the newest few kept), `best/` (lowest
validation loss) and `final/`, each in the hub layout (`taxoclip predict --model DIR` and
`--model RUN` load them). Step checkpoints carry `train_state.pt`: the step, the data position
(epoch, batches done in it), optimizer and grad-scaler state, the best validation loss, and the
torch RNG states of every process. The learning rate is a pure function of the step, so the
schedule needs no state of its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ..models import layout
from .distributed import Dist, all_gather_objects


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / layout.CHECKPOINTS_DIR


def step_dirs(run_dir: Path) -> list[Path]:
    """Complete step checkpoints (weights and train state present), oldest first."""
    found = []
    for path in checkpoints_dir(run_dir).glob("step-*"):
        if (path / layout.TRAIN_STATE).is_file() and (path / layout.WEIGHTS_SAFETENSORS).is_file():
            found.append(path)
    return sorted(found)


def latest_step_dir(run_dir: Path) -> Path | None:
    dirs = step_dirs(run_dir)
    return dirs[-1] if dirs else None


def prune_steps(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints (never best/final)."""
    for path in step_dirs(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)


def rng_states(ctx: Dist) -> dict[str, Any]:
    """The torch RNG state of every process (gathered; all processes must call this)."""
    cpu = all_gather_objects(torch.get_rng_state(), ctx)
    cuda = all_gather_objects(torch.cuda.get_rng_state(), ctx) if ctx.device.startswith("cuda") else []
    return {"cpu": cpu, "cuda": cuda}


def restore_rng_states(states: dict[str, Any], ctx: Dist) -> None:
    """Restore this process's RNG states if the checkpoint was written by as many processes."""
    if len(states.get("cpu", [])) == ctx.world_size:
        torch.set_rng_state(states["cpu"][ctx.rank])
    if ctx.device.startswith("cuda") and len(states.get("cuda", [])) == ctx.world_size:
        torch.cuda.set_rng_state(states["cuda"][ctx.rank])
