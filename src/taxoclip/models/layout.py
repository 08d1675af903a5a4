"""File layouts of official checkpoints, tree-of-life banks and taxoclip's own checkpoints.

One place for every file name that writers (trainer, `dev make-standin`, bank builders) and
readers (loader, predict, evaluate) share. A taxoclip checkpoint is a directory in the same
layout as an official hub repo, plus `taxoclip.json` (provenance) and optionally
`train_state.pt` (optimizer/scheduler/RNG/data position, for `train --resume`).
"""

from __future__ import annotations

CONFIG_FILE = "open_clip_config.json"
"""`{"model_cfg": {...}, "preprocess_cfg": {...}}`, as on the Hub."""

WEIGHTS_SAFETENSORS = "open_clip_model.safetensors"
WEIGHTS_BIN = "open_clip_pytorch_model.bin"
WEIGHTS_FILES: tuple[str, ...] = (WEIGHTS_SAFETENSORS, WEIGHTS_BIN)
"""Weight file names in order of preference (safetensors never runs code)."""

TOL_DIR = "embeddings"
TOL_EMBEDDINGS = f"{TOL_DIR}/txt_emb_species.npy"
"""float32 [D, N]: one renormalised 80-template mean text embedding per taxon (column)."""
TOL_NAMES = f"{TOL_DIR}/txt_emb_species.json"
"""List of N entries `[[kingdom, phylum, class, order, family, genus, epithet], common_name]`."""

TAXOCLIP_META = "taxoclip.json"
"""Provenance of a taxoclip checkpoint: format version, architecture, step, recipe, parent model."""
TRAIN_STATE = "train_state.pt"
"""Optimizer, scheduler, scaler, RNG and data position; tensors only (loaded with weights_only)."""

CHECKPOINT_FORMAT = "taxoclip-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1

CHECKPOINTS_DIR = "checkpoints"
"""Inside a training run directory: one hub-layout directory per saved checkpoint."""
FINAL_CHECKPOINT = "final"
BEST_CHECKPOINT = "best"
STEP_CHECKPOINT = "step-{step:08d}"
"""`--model RUN_DIR` picks final, else best (lowest validation loss), else the latest step."""
