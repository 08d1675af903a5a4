"""The training loop: one readable function from config to checkpoints, on 1..N processes.

    setup -> data -> model/objective -> optimizer -> (resume) -> epochs of steps -> validation
          -> checkpoints (every N steps, best, final)

The contrastive objective uses open_clip's ClipLoss (SigLipLoss for SigLIP models) with
local loss and gather-with-grad under DDP. Gradient accumulation is exact for the contrastive
loss: features of all micro-batches are computed first without gradients, then each
micro-batch is recomputed with gradients against the others' cached features (open_clip's
method), so the loss and gradient are those of the whole batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import TaxoclipError
from ..models import layout
from ..models.checkpoint import load_train_state, save_checkpoint
from . import baselines, checkpoints, distributed
from .captions import CaptionSampler, CaptionTokens
from .config import TrainConfig, check_world
from .data import (
    IMAGE_MEMBER,
    TrainBatches,
    ValBatches,
    epoch_samples,
    find_shards,
    joined_batches,
    loader,
    member_filter,
)
from .distributed import Dist
from .evaluation import ZeroShotTask
from .model import BuiltModel, ContrastiveModel, build_model, image_transforms

METRICS_FILE = "metrics.jsonl"
"""One JSON object per line: training records (`loss`, `lr`, ...) and validation records (`val_loss`, ...)."""
CONFIG_COPY = "config.yaml"
TENSORBOARD_DIR = "tensorboard"


# -- objectives ----------------------------------------------------------------------------------------
@dataclass
class Objective:
    """What is trained and how its targets are made: contrastive, or a CE baseline."""

    name: str
    module: torch.nn.Module
    targets: Callable
    members: list[str]
    classes: dict[str, list[str]] | None = None


def make_objective(config: TrainConfig, built: BuiltModel, train_shards: Any, ctx: Dist) -> Objective:
    if config.objective == "clip":
        sampler = CaptionSampler(config.data.text_types, config.data.text_sampling, config.run.seed)
        return Objective("clip", ContrastiveModel(built.clip), CaptionTokens(sampler, built.tokenizer),
                         [IMAGE_MEMBER, *sampler.members])
    ranks = baselines.OBJECTIVE_RANKS[config.objective]
    classes = baselines.class_lists(config.data.train, train_shards, ranks) if ctx.main else None
    classes = distributed.broadcast_object(classes, ctx)
    if not all(classes.values()):
        raise TaxoclipError(f"{config.data.train}: no labelled samples for {config.objective}")
    embed_dim = int(built.model_cfg["embed_dim"])
    module = baselines.Classifier(built.clip, classes, embed_dim)
    return Objective(config.objective, module, baselines.RankLabels(classes),
                     [IMAGE_MEMBER, baselines.LABEL_MEMBER], classes)


def contrastive_loss(config: TrainConfig, clip: Any, ctx: Dist) -> torch.nn.Module:
    from open_clip.loss import ClipLoss, SigLipLoss

    if getattr(clip, "logit_bias", None) is not None:
        return SigLipLoss(rank=ctx.rank, world_size=ctx.world_size)
    return ClipLoss(local_loss=config.loss.local_loss, gather_with_grad=config.loss.gather_with_grad,
                    cache_labels=True, rank=ctx.rank, world_size=ctx.world_size)


# -- optimizer and schedule ---------------------------------------------------------------------------
def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: none on biases, norm gains, logit scale/bias, class embeddings."""
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim < 2 or name.endswith(".bias") or "logit_scale" in name or "logit_bias" in name
        (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, config: TrainConfig, total_steps: int) -> float:
    """Linear warmup to `lr` over `warmup_steps`, then cosine to `min_lr` at the last step (or constant)."""
    optim = config.optim
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return optim.lr
    span = max(1, total_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    return optim.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (optim.lr - optim.min_lr)


def resolve_precision(requested: str, device: str) -> str:
    """fp32 on CPU whatever the recipe says; `auto` is bf16 AMP on GPUs that have it."""
    if not device.startswith("cuda"):
        return "fp32"
    if requested == "auto":
        return "amp_bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return requested


def autocast_for(precision: str, device: str) -> Callable[[], Any]:
    dtypes = {"amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}
    if precision not in dtypes:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type="cuda", dtype=dtypes[precision])


# -- steps ---------------------------------------------------------------------------------------------
def contrastive_step(net: torch.nn.Module, loss_fn: Any, images: torch.Tensor, tokens: torch.Tensor,
                     accum: int, autocast: Callable, scaler: Any, ddp: bool) -> torch.Tensor:
    """Forward and backward of one (local) batch; returns its loss (detached, not synchronised)."""
    if accum == 1:
        with autocast():
            image_f, text_f, scale, bias = net(images, tokens)
            loss = _clip_loss(loss_fn, image_f, text_f, scale, bias)
        scaler.scale(loss).backward()
        return loss.detach()
    image_chunks, token_chunks = images.chunk(accum), tokens.chunk(accum)
    with torch.no_grad(), autocast():
        cached = [net(i, t)[:2] for i, t in zip(image_chunks, token_chunks)]
    first_loss = None
    for j in range(accum):
        sync = contextlib.nullcontext() if (not ddp or j == accum - 1) else net.no_sync()
        with sync:
            with autocast():
                image_j, text_j, scale, bias = net(image_chunks[j], token_chunks[j])
                image_f = torch.cat([image_j if k == j else c[0] for k, c in enumerate(cached)])
                text_f = torch.cat([text_j if k == j else c[1] for k, c in enumerate(cached)])
                if j:  # the logit scale/bias get their gradient once, not once per micro-batch
                    scale = scale.detach()
                    bias = bias.detach() if bias is not None else None
                loss = _clip_loss(loss_fn, image_f, text_f, scale, bias)
            scaler.scale(loss).backward()
        if j == 0:
            first_loss = loss.detach()
    return first_loss


def _clip_loss(loss_fn: Any, image_f: Any, text_f: Any, scale: Any, bias: Any) -> torch.Tensor:
    if bias is not None:
        return loss_fn(image_f, text_f, scale, bias)
    return loss_fn(image_f, text_f, scale)


def classifier_step(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, accum: int,
                    autocast: Callable, scaler: Any, ddp: bool) -> torch.Tensor:
    total = torch.zeros((), device=images.device)
    for j, (image_chunk, label_chunk) in enumerate(zip(images.chunk(accum), labels.chunk(accum))):
        sync = contextlib.nullcontext() if (not ddp or j == accum - 1) else net.no_sync()
        with sync:
            with autocast():
                loss = baselines.classifier_loss(net(image_chunk), label_chunk) / accum
            scaler.scale(loss).backward()
        total += loss.detach()
    return total


# -- validation -----------------------------------------------------------------------------------------
def validate(objective: Objective, module: torch.nn.Module, val_data: ValBatches | None, workers: int,
             normalize: Callable, ctx: Dist, autocast: Callable) -> dict[str, float]:
    """Loss over the validation shards (batches of fixed size, each process a share), summed over processes."""
    if val_data is None:
        return {}
    from open_clip.loss import ClipLoss, SigLipLoss

    module.eval()
    contrastive = objective.name == "clip"
    local_loss = (SigLipLoss() if getattr(module.clip, "logit_bias", None) is not None else ClipLoss()) \
        if contrastive else None
    loss_sum, count, correct, counted = 0.0, 0.0, 0.0, 0.0
    with torch.no_grad():
        for images, targets in _guarded(joined_batches(loader(val_data, workers), 1)):
            images = normalize(images.to(ctx.device, non_blocking=True))
            targets = targets.to(ctx.device, non_blocking=True)
            with autocast():
                if contrastive:
                    image_f, text_f, scale, bias = module(images, targets)
                    loss = _clip_loss(local_loss, image_f, text_f, scale, bias)
                else:
                    logits = module(images)
                    loss = baselines.classifier_loss(logits, targets)
                    hits, seen = baselines.finest_accuracy(logits, targets)
                    correct, counted = correct + hits, counted + seen
            loss_sum += float(loss) * len(images)
            count += len(images)
    module.train()
    loss_sum, count, correct, counted = distributed.all_reduce_sum([loss_sum, count, correct, counted], ctx)
    result = {"val_loss": loss_sum / count} if count else {}
    if counted:
        result["val_top1"] = correct / counted
    return result


def _guarded(batches: Iterator) -> Iterator:
    """Batches, with errors from DataLoader workers (re-raised with a traceback text) cut to one line."""
    try:
        yield from batches
    except Exception as err:  # noqa: BLE001
        text = str(err).strip()
        if not isinstance(err, TaxoclipError) and "DataLoader worker" not in text:
            raise
        lines = [line for line in text.splitlines() if line.strip()]
        last = lines[-1] if lines else type(err).__name__
        if ": " in last and last.split(": ", 1)[0].rsplit(".", 1)[-1].endswith("Error"):
            last = last.split(": ", 1)[1]  # "taxoclip.train.data.DataError: message" -> "message"
        raise TaxoclipError(last if isinstance(err, TaxoclipError) else f"data loading failed: {last}") from None


# -- the run --------------------------------------------------------------------------------------------
@dataclass
class Position:
    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    best_val_loss: float = math.inf


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train with `config` (in this process, or as one of torchrun's); returns the run directory."""
    ctx = distributed.setup(config.run.device)
    threads = torch.get_num_threads()
    try:
        if config.run.threads:
            torch.set_num_threads(config.run.threads)
        return _train(config, resume, ctx)
    finally:
        torch.set_num_threads(threads)
        distributed.teardown(ctx)


def _train(config: TrainConfig, resume: bool, ctx: Dist) -> Path:
    check_world(config, ctx.world_size)
    run_dir = Path(config.run.dir)
    say = _printer(ctx)

    # data
    train_shards = find_shards(config.data.train)
    samples_per_epoch = epoch_samples(train_shards, config.data.samples_per_epoch, config.data.train)
    batch = config.optim.global_batch_size
    steps_per_epoch = samples_per_epoch // batch
    if steps_per_epoch < 1:
        raise TaxoclipError(f"{config.data.train}: {samples_per_epoch} samples per epoch is less than one "
                            f"global batch ({batch}); lower optim.global_batch_size")
    total_steps = steps_per_epoch * config.optim.epochs

    # model, objective, optimizer
    built = build_model(config.model, config.run.seed)
    objective = make_objective(config, built, train_shards, ctx)
    module = objective.module.to(ctx.device)
    precision = resolve_precision(config.optim.precision, ctx.device)
    autocast = autocast_for(precision, ctx.device)
    optimizer = torch.optim.AdamW(param_groups(module, config.optim.weight_decay), lr=config.optim.lr,
                                  betas=tuple(config.optim.betas), eps=config.optim.eps,
                                  fused=ctx.device.startswith("cuda"))
    device_type = "cuda" if ctx.device.startswith("cuda") else "cpu"
    scaler = torch.amp.GradScaler(device_type, enabled=precision == "amp_fp16")

    # resume
    position = Position()
    finished = (checkpoints.checkpoints_dir(run_dir) / layout.FINAL_CHECKPOINT).is_dir()
    if resume and finished:
        say(f"{run_dir} has finished already (checkpoints/{layout.FINAL_CHECKPOINT}); nothing to resume")
        return run_dir
    if resume:
        position = _restore(run_dir, config, objective, module, optimizer, scaler, ctx, say)
    elif finished or checkpoints.step_dirs(run_dir):
        raise TaxoclipError(f"{run_dir} already has checkpoints: pass --resume to continue it, "
                            f"or choose another run.dir")

    net = distributed.wrap_ddp(module, ctx)
    # open_clip's gather-with-grad uses torch.distributed.nn.all_gather, deprecated but correct
    warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
    loss_fn = contrastive_loss(config, built.clip, ctx) if objective.name == "clip" else None
    train_transform, eval_transform, normalize = image_transforms(built.preprocess_cfg)
    wanted = member_filter(objective.members)
    train_data = TrainBatches(train_shards, streams=config.data.streams, global_batch=batch, rank=ctx.rank,
                              world_size=ctx.world_size, seed=config.run.seed, shuffle_buffer=config.data.shuffle_buffer,
                              resampled=config.data.resampled, transform=train_transform,
                              targets=objective.targets, wanted=wanted)
    val_data = None
    if config.data.val:
        val_data = ValBatches(find_shards(config.data.val), batch_size=config.data.val_batch_size, rank=ctx.rank,
                              world_size=ctx.world_size, limit=config.data.val_samples, transform=eval_transform,
                              targets=objective.targets, wanted=wanted)
    zero_shot = ZeroShotTask(config.eval.zero_shot) if (config.eval.zero_shot and ctx.main) else None

    # bookkeeping
    writer = None
    if ctx.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_config_copy(run_dir, config)
        writer = _tensorboard(run_dir) if config.run.tensorboard else None
        say(f"training {objective.name} on {ctx.world_size} process(es), {ctx.device}, {precision}: "
            f"{samples_per_epoch} samples/epoch, {steps_per_epoch} steps/epoch x {config.optim.epochs} epochs, "
            f"global batch {batch}, run dir {run_dir}")
    meta_base = {"recipe": config.name, "objective": objective.name, "parent": built.parent,
                 "config": config.as_dict(), "world_size": ctx.world_size, "precision": precision}
    progress = _progress(total_steps, position.step, ctx.main and config.run.progress)
    accum = config.optim.grad_accum_steps
    workers = config.data.workers
    window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()

    def save(name: str, with_state: bool, extra: dict) -> None:
        state = None
        if with_state:
            state = {"step": position.step, "epoch": position.epoch, "batches_done": position.batches_done,
                     "best_val_loss": position.best_val_loss, "optimizer": optimizer.state_dict(),
                     "scaler": scaler.state_dict(), "rng": checkpoints.rng_states(ctx),
                     "world_size": ctx.world_size}
            if objective.classes is not None:
                state["heads"] = module.heads.state_dict()
        if ctx.main:
            directory = checkpoints.checkpoints_dir(run_dir) / name
            meta = {**meta_base, "step": position.step, "epoch": position.epoch,
                    "batches_done": position.batches_done, **extra}
            save_checkpoint(module.clip, directory, built.model_cfg, built.preprocess_cfg, meta, state)
            if objective.classes is not None:
                baselines.save_heads(module, directory, objective.name, objective.classes)
            if with_state:
                checkpoints.prune_steps(run_dir, config.run.keep_checkpoints)
        distributed.barrier(ctx)

    for epoch in range(position.epoch, config.optim.epochs):
        start = position.batches_done if epoch == position.epoch else 0
        position.epoch, position.batches_done = epoch, start
        train_data.set_epoch(epoch, start, steps_per_epoch)
        batches = _guarded(joined_batches(loader(train_data, workers), max(1, workers)))
        for images, targets in batches:
            lr = lr_at(position.step, config, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = normalize(images.to(ctx.device, non_blocking=True))
            targets = targets.to(ctx.device, non_blocking=True)
            if objective.name == "clip":
                loss = contrastive_step(net, loss_fn, images, targets, accum, autocast, scaler, ctx.enabled)
            else:
                loss = classifier_step(net, images, targets, accum, autocast, scaler, ctx.enabled)
            if config.optim.grad_clip_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(module.parameters(), config.optim.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if objective.name == "clip":
                with torch.no_grad():
                    module.clip.logit_scale.clamp_(0, math.log(100))
            position.step += 1
            position.batches_done += 1
            window_loss, window_steps = window_loss + loss, window_steps + 1  # a tensor: no GPU sync per step

            if position.step % config.run.log_every_steps == 0 or position.step == total_steps:
                mean_loss = distributed.all_reduce_sum([float(window_loss) / window_steps], ctx)[0] / ctx.world_size
                elapsed = time.perf_counter() - window_start
                record = {"step": position.step, "epoch": epoch, "loss": mean_loss, "lr": lr,
                          "samples_per_s": window_steps * batch / elapsed if elapsed > 0 else None}
                if objective.name == "clip":
                    record["logit_scale"] = float(module.clip.logit_scale.detach().exp())
                _log(run_dir, writer, record, ctx)
                progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
            progress.update(1)
            if position.step % config.run.checkpoint_every_steps == 0:
                save(layout.STEP_CHECKPOINT.format(step=position.step), True, {})

        last_epoch = epoch == config.optim.epochs - 1
        if (epoch + 1) % config.eval.val_every_epochs == 0 or last_epoch:
            metrics = validate(objective, module, val_data, workers, normalize, ctx, autocast)
            if zero_shot is not None:
                module.eval()
                metrics["zero_shot_top1"] = zero_shot.accuracy(
                    module.clip, built.tokenizer, eval_transform, normalize, ctx.device, autocast)
                module.train()
            distributed.barrier(ctx)
            if metrics:
                _log(run_dir, writer, {"step": position.step, "epoch": epoch, **metrics}, ctx)
                if ctx.main:
                    progress.write(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
                                   file=sys.stderr)
            if metrics.get("val_loss", math.inf) < position.best_val_loss:
                position.best_val_loss = metrics["val_loss"]
                save(layout.BEST_CHECKPOINT, False, metrics)
        position.batches_done = 0
    position.epoch = config.optim.epochs

    save(layout.FINAL_CHECKPOINT, False, {"best_val_loss": position.best_val_loss})
    progress.close()
    if writer is not None:
        writer.close()
    say(f"done: {checkpoints.checkpoints_dir(run_dir) / layout.FINAL_CHECKPOINT}")
    return run_dir


def _restore(run_dir: Path, config: TrainConfig, objective: Objective, module: torch.nn.Module,
             optimizer: Any, scaler: Any, ctx: Dist, say: Callable) -> Position:
    """Load the newest step checkpoint of `run_dir` into the model, optimizer and RNGs."""
    from .model import load_weights

    latest = checkpoints.latest_step_dir(run_dir)
    if latest is None:
        raise TaxoclipError(f"--resume: {run_dir} has no step checkpoint to resume from")
    state = load_train_state(latest)
    load_weights(module.clip, latest)
    if objective.classes is not None:
        module.heads.load_state_dict(state["heads"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    checkpoints.restore_rng_states(state["rng"], ctx)
    _warn_config_changes(latest, config, say)
    say(f"resuming from {latest} (step {state['step']}, epoch {state['epoch']}, "
        f"{state['batches_done']} batches into it)")
    return Position(int(state["step"]), int(state["epoch"]), int(state["batches_done"]),
                    float(state["best_val_loss"]))


def _warn_config_changes(checkpoint_dir: Path, config: TrainConfig, say: Callable) -> None:
    try:
        saved = json.loads((checkpoint_dir / layout.TAXOCLIP_META).read_text()).get("config", {})
    except (OSError, ValueError):
        return
    changed = [key for key in _flatten(config.as_dict()) if _flatten(saved).get(key) != _flatten(config.as_dict())[key]]
    if changed:
        say(f"note: resuming with changed settings ({', '.join(changed)}); the continuation is not exact")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "model_cfg":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# -- logging -----------------------------------------------------------------------------------------
def _printer(ctx: Dist) -> Callable[[str], None]:
    def say(message: str) -> None:
        if ctx.main:
            print(f"taxoclip train: {message}", file=sys.stderr, flush=True)

    return say


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=min(initial, total), desc="train", unit="step", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True)


def _tensorboard(run_dir: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / TENSORBOARD_DIR))


def _log(run_dir: Path, writer: Any, record: dict, ctx: Dist) -> None:
    if not ctx.main:
        return
    with open(run_dir / METRICS_FILE, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    if writer is not None:
        for key, value in record.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                group = "val" if key.startswith(("val_", "zero_shot")) else "train"
                writer.add_scalar(f"{group}/{key}", value, record["step"])


def _write_config_copy(run_dir: Path, config: TrainConfig) -> None:
    import yaml

    (run_dir / CONFIG_COPY).write_text(yaml.safe_dump(config.as_dict(), sort_keys=False))
