"""The training recipe: a YAML file of sections, plus `section.key=value` overrides.

Every field has a default here and a one-line meaning; `configs/train/*.yaml` set what
differs. Unknown keys, wrong types and impossible combinations are one-line errors.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TaxoclipError
from ..taxonomy.text import TRAINING_TEXT_TYPES, text_type_key

OBJECTIVES: tuple[str, ...] = ("clip", "ce_species", "ce_hierarchical")
"""`clip`: mixed-text-type contrastive training; the other two are the paper's CE baselines."""
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "amp_bf16", "amp_fp16")
"""`auto` = amp_bf16 on GPUs that support it, else fp32. Any AMP choice runs as fp32 on CPU."""
TEXT_SAMPLING: tuple[str, ...] = ("image", "batch")


@dataclass
class ModelSection:
    init: str | None = "ViT-B-16:openai"
    """Any `--model` spec: `ARCH` (random init), `ARCH:TAG`, `bioclip`, `hf-hub:...`, a checkpoint dir."""
    model_cfg: dict | None = None
    """An explicit open_clip `model_cfg` to build from scratch (instead of `init`), e.g. a tiny ViT."""
    grad_checkpointing: bool = False


@dataclass
class DataSection:
    train: str = ""
    """A split directory with `shard-*.tar` + `sizes.json`, or shard URLs/paths with brace patterns."""
    val: str | None = None
    text_types: list[str] = field(default_factory=lambda: list(TRAINING_TEXT_TYPES))
    """Caption types to draw from (one entry = a fixed type, for ablations)."""
    text_sampling: str = "image"
    """`image`: a type drawn per image (the paper); `batch`: one per global batch (the released code)."""
    streams: int = 8
    """Parallel sample streams making up every global batch; fixed so that 1..N processes see the same batches."""
    workers: int = 2
    """DataLoader worker processes per training process."""
    shuffle_buffer: int = 2000
    """Samples held per stream for shuffling (0 = read in shard order)."""
    resampled: bool = False
    """Draw shards with replacement (webdataset `ResampledShards` semantics) instead of a per-epoch permutation."""
    samples_per_epoch: int | None = None
    """Epoch length; default: the total of `sizes.json`."""
    val_batch_size: int = 256
    """Contrastive batch size of validation (fixed, so that val loss is comparable across runs)."""
    val_samples: int | None = None
    """Use only the first N validation samples."""


@dataclass
class OptimSection:
    epochs: int = 100
    global_batch_size: int = 32768
    grad_accum_steps: int = 1
    lr: float = 1e-4
    warmup_steps: int = 1000
    schedule: str = "cosine"
    """`cosine` (to `min_lr`) or `constant`, both after linear warmup."""
    min_lr: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    weight_decay: float = 0.2
    grad_clip_norm: float | None = None
    precision: str = "auto"


@dataclass
class LossSection:
    local_loss: bool = True
    gather_with_grad: bool = True


@dataclass
class ZeroShotSection:
    data: str = ""
    """Shards (directory or pattern) of a small labelled set; classes are the distinct `name_member` values."""
    name_member: str = "taxonomic_name"
    max_samples: int = 512
    templates: str = "openai"
    """A template set (`openai`: 80, `bioclip`: 81) or one template such as `a photo of {}.`"""


@dataclass
class EvalSection:
    val_every_epochs: int = 1
    zero_shot: ZeroShotSection | None = None


@dataclass
class RunSection:
    dir: str = ""
    """Run directory (checkpoints/, tensorboard/, metrics.jsonl); default `runs/train/<config name>`."""
    seed: int = 0
    device: str = "auto"
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 3
    """Step checkpoints kept (the newest); `best` and `final` are always kept."""
    log_every_steps: int = 10
    tensorboard: bool = True
    progress: bool = True
    threads: int | None = None
    """torch CPU threads per process (default: torch's choice)."""


@dataclass
class TrainConfig:
    objective: str = "clip"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    eval: EvalSection = field(default_factory=EvalSection)
    run: RunSection = field(default_factory=RunSection)
    name: str = "train"
    """The recipe's name (defaults to the YAML file's stem)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(source: str | os.PathLike | dict, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file (or dict) and `section.key=value` overrides (values parsed as YAML)."""
    import yaml

    name = "train"
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise TaxoclipError(f"cannot read training config {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise TaxoclipError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise TaxoclipError(f"{path}: expected a mapping of sections at the top level")
        name = path.stem
    raw = {"name": name, **_deepcopy(raw)}
    for item in overrides:
        apply_override(raw, item)
    config = _build(TrainConfig, raw, "")
    validate(config)
    return config


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` in a nested dict (value parsed as YAML: numbers, lists, null ...)."""
    import yaml

    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise TaxoclipError(f"bad override {item!r}: expected section.key=value, e.g. optim.lr=3e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise TaxoclipError(f"bad override {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def validate(config: TrainConfig) -> None:
    """Cross-field checks that need no data or processes."""
    if config.objective not in OBJECTIVES:
        raise TaxoclipError(f"objective: {config.objective!r} is not one of {', '.join(OBJECTIVES)}")
    if not config.data.train:
        raise TaxoclipError("data.train is not set: give a shard directory, e.g. data.train=runs/data/NAME/train")
    if config.model.init is None and config.model.model_cfg is None:
        raise TaxoclipError("set model.init (a model spec) or model.model_cfg (an architecture to build from scratch)")
    try:
        config.data.text_types = [text_type_key(t) for t in config.data.text_types]
    except ValueError as err:
        raise TaxoclipError(f"data.text_types: {err}") from None
    if not config.data.text_types:
        raise TaxoclipError("data.text_types is empty: name at least one text type")
    if config.data.text_sampling not in TEXT_SAMPLING:
        raise TaxoclipError(f"data.text_sampling: {config.data.text_sampling!r} is not one of image, batch")
    if config.optim.precision not in PRECISIONS:
        raise TaxoclipError(f"optim.precision: {config.optim.precision!r} is not one of {', '.join(PRECISIONS)}")
    if config.optim.schedule not in ("cosine", "constant"):
        raise TaxoclipError(f"optim.schedule: {config.optim.schedule!r} is not one of cosine, constant")
    if len(config.optim.betas) != 2:
        raise TaxoclipError("optim.betas: expected two numbers, e.g. [0.9, 0.98]")
    positive = {"optim.epochs": config.optim.epochs, "optim.global_batch_size": config.optim.global_batch_size,
                "optim.grad_accum_steps": config.optim.grad_accum_steps, "data.streams": config.data.streams,
                "data.val_batch_size": config.data.val_batch_size,
                "run.checkpoint_every_steps": config.run.checkpoint_every_steps,
                "run.log_every_steps": config.run.log_every_steps, "eval.val_every_epochs": config.eval.val_every_epochs}
    for key, value in positive.items():
        if value < 1:
            raise TaxoclipError(f"{key} must be at least 1 (got {value})")
    if config.data.workers < 0 or config.data.shuffle_buffer < 0 or config.optim.warmup_steps < 0:
        raise TaxoclipError("data.workers, data.shuffle_buffer and optim.warmup_steps cannot be negative")
    if config.optim.global_batch_size % config.data.streams:
        raise TaxoclipError(f"optim.global_batch_size ({config.optim.global_batch_size}) must be a multiple "
                            f"of data.streams ({config.data.streams})")
    if not config.run.dir:
        config.run.dir = str(Path("runs") / "train" / config.name)


def check_world(config: TrainConfig, world_size: int) -> None:
    """The batch arithmetic for `world_size` processes: streams and micro-batches must divide evenly."""
    streams, workers = config.data.streams, max(1, config.data.workers)
    if streams % (world_size * workers):
        raise TaxoclipError(
            f"data.streams ({streams}) must be a multiple of processes x data workers ({world_size} x {workers}); "
            f"e.g. data.streams={world_size * workers * max(1, streams // (world_size * workers))}")
    local = config.optim.global_batch_size // world_size
    if config.optim.global_batch_size % world_size or local % config.optim.grad_accum_steps:
        raise TaxoclipError(
            f"optim.global_batch_size ({config.optim.global_batch_size}) must split evenly into {world_size} "
            f"processes x {config.optim.grad_accum_steps} accumulation steps")


# -- building dataclasses from plain data ------------------------------------------------------------
def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise TaxoclipError(f"{where or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise TaxoclipError(f"unknown config key {key!r}; expected one of: {', '.join(sorted(names))}")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TaxoclipError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TaxoclipError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads `1e-4` as a string
            except ValueError:
                pass
        raise TaxoclipError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise TaxoclipError(f"{where}: expected a string, got {value!r}")
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(items)]
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise TaxoclipError(f"{where}: expected a mapping, got {value!r}")
    return value


def _deepcopy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)
