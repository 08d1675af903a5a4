"""Training on real shards of the shared photos: recipes, caption sampling, data order, loss,
gradient accumulation, checkpoints that load, resume after SIGKILL, DDP on CPU, CE baselines."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from shards import write_dataset

from taxoclip.errors import TaxoclipError
from taxoclip.taxonomy.text import TRAINING_TEXT_TYPES
from taxoclip.train import load_config, train
from taxoclip.train.captions import CaptionSampler
from taxoclip.train.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
"""TINY_MODEL_CFG's shape at 32 px (16 image tokens), so that a training step takes milliseconds."""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, labels) -> Path:
    """64 training and 32 validation samples of the shared photos, 16 per shard, 32 px."""
    return write_dataset(labels, tmp_path_factory.mktemp("shards"), n_train=64, n_val=32, image_size=32)


def tiny_config(dataset: Path, run_dir: Path, **sections) -> dict:
    raw = {
        "model": {"init": None, "model_cfg": TINY_CFG},
        "data": {"train": str(dataset / "train"), "val": str(dataset / "val"), "streams": 4, "workers": 0,
                 "shuffle_buffer": 8, "val_batch_size": 16},
        "optim": {"epochs": 2, "global_batch_size": 16, "lr": 5e-4, "warmup_steps": 2, "weight_decay": 0.2},
        "run": {"dir": str(run_dir), "checkpoint_every_steps": 2, "log_every_steps": 1, "progress": False,
                "tensorboard": False, "threads": 1},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return raw


def write_yaml(path: Path, raw: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(raw))
    return path


def losses(run_dir: Path, key: str = "loss") -> dict[int, float]:
    """step -> value of the last record with `key` (a resumed run rewrites steps after its checkpoint)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if key in record:
            out[record["step"]] = record[key]
    return out


# -- recipes --------------------------------------------------------------------------------------------
def test_bioclip_recipe_is_the_papers():
    config = load_config(REPO / "configs" / "train" / "bioclip-vit-b-16.yaml")
    assert config.objective == "clip"
    assert config.model.init == "ViT-B-16:openai" and config.model.grad_checkpointing
    assert (config.optim.epochs, config.optim.global_batch_size, config.optim.lr) == (100, 32768, 1e-4)
    assert (config.optim.warmup_steps, config.optim.schedule, config.optim.min_lr) == (1000, "cosine", 0.0)
    assert config.optim.betas == [0.9, 0.98] and config.optim.eps == 1e-6 and config.optim.weight_decay == 0.2
    assert config.optim.precision == "amp_fp16"
    assert config.loss.local_loss and config.loss.gather_with_grad
    assert config.data.text_types == list(TRAINING_TEXT_TYPES) and config.data.text_sampling == "image"


def test_config_overrides_and_one_line_errors(tmp_path):
    path = REPO / "configs" / "train" / "tiny-cpu.yaml"
    config = load_config(path, ["optim.lr=3e-4", "data.text_types=[com]", "run.dir=" + str(tmp_path)])
    assert config.optim.lr == 3e-4 and config.data.text_types == ["com"] and config.run.dir == str(tmp_path)
    assert config.name == "tiny-cpu"
    for overrides, message in ((["optim.lrr=1"], "unknown config key 'optim.lrr'"),
                               (["optim.epochs=many"], "optim.epochs: expected an integer"),
                               (["data.text_types=[latin]"], "unknown text type 'latin'"),
                               (["data.text_sampling=step"], "data.text_sampling"),
                               (["data.streams=3"], "multiple of data.streams"),
                               (["nonsense"], "expected section.key=value")):
        with pytest.raises(TaxoclipError, match=message.replace("[", r"\[")) as info:
            load_config(path, overrides)
        assert "\n" not in str(info.value)
    from taxoclip.cli import main

    assert main(["train", str(path), "optim.lrr=1"]) == 2
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2


def test_missing_shards_are_one_line_errors(tmp_path):
    raw = tiny_config(tmp_path / "nowhere", tmp_path / "run")
    with pytest.raises(TaxoclipError, match="no such shard") as info:
        train(load_config(raw))
    assert "\n" not in str(info.value)


def test_a_corrupt_image_stops_training_with_a_one_line_error(dataset, tmp_path):
    from webdataset import TarWriter

    from taxoclip.train.data import find_shards, read_shard

    train_dir = tmp_path / "train"
    train_dir.mkdir()
    samples = list(read_shard(find_shards(str(dataset / "train")).urls[0]))
    with TarWriter(str(train_dir / "shard-000000.tar")) as sink:
        for i, sample in enumerate(samples):
            record = {k: v for k, v in sample.items() if not k.startswith("__url")}
            if i == 5:
                record["jpg"] = b"not a jpeg"
            sink.write(record)
    (train_dir / "sizes.json").write_text(json.dumps({"shard-000000.tar": len(samples)}))
    raw = tiny_config(dataset, tmp_path / "run", data={"train": str(train_dir), "val": None, "workers": 1,
                                                       "streams": 1})
    with pytest.raises(TaxoclipError, match="bad image") as info:
        train(load_config(raw))
    assert "\n" not in str(info.value) and samples[5]["__key__"] in str(info.value)


# -- captions -------------------------------------------------------------------------------------------
def test_caption_sampling_distributions_per_image_and_per_batch():
    """Per image: types are i.i.d. uniform, so batches mix them; per batch: one type per global
    batch (identical in every stream), uniform over batches. Neither touches the global RNGs."""
    types = list(TRAINING_TEXT_TYPES)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    per_image = CaptionSampler(types, "image", seed=3)
    per_batch = CaptionSampler(types, "batch", seed=3)
    batches, size, streams = 400, 32, 4

    image_counts, mixed = Counter(), 0
    for batch in range(batches):
        drawn = [t for s in range(streams) for t in per_image.types(0, batch, s, size // streams)]
        image_counts.update(drawn)
        mixed += len(set(drawn)) > 1
    total = batches * size
    assert set(image_counts) == set(types)
    for count in image_counts.values():  # uniform within 4 binomial standard deviations
        assert abs(count - total / 5) < 4 * math.sqrt(total * 0.2 * 0.8)
    assert mixed == batches

    batch_counts = Counter()
    for batch in range(batches):
        drawn = {t for s in range(streams) for t in per_batch.types(0, batch, s, size // streams)}
        assert len(drawn) == 1
        batch_counts.update(drawn)
    for count in batch_counts.values():
        assert abs(count - batches / 5) < 4 * math.sqrt(batches * 0.2 * 0.8)
    assert len(batch_counts) == 5

    fixed = CaptionSampler(["com"], "image", seed=3)
    assert set(fixed.types(1, 2, 0, 50)) == {"com"}
    assert per_image.types(5, 7, 1, 8) == CaptionSampler(types, "image", seed=3).types(5, 7, 1, 8)
    assert per_image.types(5, 7, 1, 8) != per_image.types(6, 7, 1, 8)
    after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


def test_captions_come_from_the_drawn_members(dataset):
    from taxoclip.train.data import find_shards, read_shard

    samples = list(read_shard(find_shards(str(dataset / "train")).urls[0]))
    sampler = CaptionSampler(["taxonTag_com", "sci"], "image", seed=0)
    captions = sampler.pick(samples, 0, 0, 0)
    for sample, caption, text_type in zip(samples, captions, sampler.types(0, 0, 0, len(samples))):
        assert caption == sample[text_type.lower() + ".txt"].decode()
        assert caption.startswith("a photo of ")


# -- data order -----------------------------------------------------------------------------------------
def _batch_keys(dataset: Path, world_size: int, rank: int, start: int, epoch: int = 0) -> list[list[str]]:
    from taxoclip.train.data import TrainBatches, find_shards

    def key_targets(samples, epoch, batch, stream):  # a target per sample that names it
        return torch.tensor([int(s["__key__"][:12], 16) for s in samples])

    data = TrainBatches(find_shards(str(dataset / "train")), streams=4, global_batch=16, rank=rank,
                        world_size=world_size, seed=1, shuffle_buffer=8, resampled=False,
                        transform=lambda image: torch.zeros(1), targets=key_targets)
    data.set_epoch(epoch, start, 4)
    return [sorted(keys.tolist()) for _, keys in data]


def test_global_batches_do_not_depend_on_processes_and_resume_mid_epoch(dataset):
    one = _batch_keys(dataset, 1, 0, 0)
    two = [sorted(a + b) for a, b in zip(_batch_keys(dataset, 2, 0, 0), _batch_keys(dataset, 2, 1, 0))]
    assert one == two
    assert len({k for batch in one for k in batch}) == 64  # an epoch sees every sample once
    assert _batch_keys(dataset, 1, 0, 2) == one[2:]  # resuming after 2 batches continues exactly
    assert _batch_keys(dataset, 1, 0, 0, epoch=1) != one  # a new order every epoch


def test_shards_from_patterns_and_resampling(dataset):
    from taxoclip.train.data import find_shards, stream_slices

    directory = find_shards(str(dataset / "train"))
    pattern = find_shards(str(dataset / "train" / "shard-{000000..000003}.tar"))
    assert pattern.urls == directory.urls and pattern.sizes == directory.sizes == (16, 16, 16, 16)
    share, extra = stream_slices(4, 4, 1, seed=0, epoch=0, resampled=False)
    assert len(share) == 1 and next(extra).shard in range(4)
    share, _ = stream_slices(4, 4, 1, seed=0, epoch=0, resampled=True)
    assert share == []
    few, _ = stream_slices(1, 4, 3, seed=0, epoch=0, resampled=False)  # one shard, four streams: slices
    assert [(s.shard, s.offset, s.every) for s in few] == [(0, 3, 4)]


# -- training -------------------------------------------------------------------------------------------
def test_training_lowers_the_loss_and_the_checkpoint_loads(dataset, tmp_path):
    from safetensors.torch import load_file

    from taxoclip.models import load_model

    raw = tiny_config(dataset, tmp_path / "run", optim={"epochs": 8, "lr": 1e-3, "warmup_steps": 4,
                                                        "weight_decay": 0.0},
                      data={"text_types": ["taxon_com"]}, run={"checkpoint_every_steps": 100})
    run_dir = train(load_config(raw))
    trace = losses(run_dir)
    first, last = np.mean([trace[s] for s in range(1, 5)]), np.mean([trace[s] for s in range(29, 33)])
    assert last < first - 0.5 and last < math.log(16) - 0.3  # well below chance (ln 16)
    assert sorted(losses(run_dir, "val_loss")) == [4 * (e + 1) for e in range(8)]

    loaded = load_model(str(run_dir))  # a run directory loads its final checkpoint, as predict does
    final = run_dir / "checkpoints" / "final"
    assert loaded.resolved.directory == final
    saved = load_file(str(final / "open_clip_model.safetensors"))
    assert torch.equal(loaded.model.state_dict()["visual.conv1.weight"], saved["visual.conv1.weight"])
    meta = json.loads((final / "taxoclip.json").read_text())
    assert meta["step"] == 32 and meta["objective"] == "clip"
    best = json.loads((run_dir / "checkpoints" / "best" / "taxoclip.json").read_text())
    assert best["val_loss"] == min(losses(run_dir, "val_loss").values())
    from PIL import Image

    image = loaded.preprocess(Image.new("RGB", (40, 30), "green")).unsqueeze(0)
    with torch.no_grad():
        assert loaded.model.encode_image(image).shape == (1, 32)


def test_gradient_accumulation_and_checkpointing_are_exact(dataset, tmp_path):
    def run(name: str, accum: int = 1, checkpointing: bool = False) -> dict[int, float]:
        raw = tiny_config(dataset, tmp_path / name, data={"val": None},
                          optim={"epochs": 1, "grad_accum_steps": accum})
        raw["model"]["grad_checkpointing"] = checkpointing
        return losses(train(load_config(raw)))

    plain, accumulated, checkpointed = run("plain"), run("accumulated", accum=4), run("ckpt", checkpointing=True)
    assert sorted(plain) == sorted(accumulated) == sorted(checkpointed) == [1, 2, 3, 4]
    assert all(abs(plain[s] - accumulated[s]) < 1e-4 for s in plain)  # the whole batch's loss and update
    assert all(abs(plain[s] - checkpointed[s]) < 1e-5 for s in plain)


def _taxoclip(*args: str) -> list[str]:
    return [sys.executable, "-m", "taxoclip", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_resume_after_kill_continues_the_same_schedule_and_data(dataset, tmp_path, capfd):
    raw = tiny_config(dataset, tmp_path / "killed", optim={"epochs": 6}, data={"val_batch_size": 32})
    config_path = write_yaml(tmp_path / "recipe.yaml", raw)
    process = subprocess.Popen(_taxoclip("train", str(config_path)), env=_env(), cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not any(checkpoints.glob("step-*")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    assert not (checkpoints / "final").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in checkpoints.glob("step-*"))
    assert killed_at < 24

    resumed = subprocess.run(_taxoclip("train", str(config_path), "--resume"), env=_env(), cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr

    reference = train(load_config({**raw, "run": {**raw["run"], "dir": str(tmp_path / "reference")}}))
    expected, got = losses(reference), losses(tmp_path / "killed")
    assert sorted(got) == sorted(expected) == list(range(1, 25))
    assert all(abs(expected[s] - got[s]) < 1e-5 for s in expected), (killed_at, expected, got)
    assert losses(reference, "val_loss") == pytest.approx(losses(tmp_path / "killed", "val_loss"), abs=1e-5)
    assert (checkpoints / "final").is_dir()
    from taxoclip.cli import main

    assert main(["train", str(config_path), "--resume"]) == 0
    assert "finished already" in capfd.readouterr().err
    assert main(["train", str(config_path)]) == 2
    assert "pass --resume" in capfd.readouterr().err.strip().splitlines()[-1]


def test_two_process_ddp_on_cpu_matches_one_process(dataset, tmp_path):
    raw = tiny_config(dataset, tmp_path / "ddp", optim={"epochs": 2})
    config_path = write_yaml(tmp_path / "recipe.yaml", raw)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(29500 + os.getpid() % 1000), "-m", "taxoclip", "train", str(config_path)]
    result = subprocess.run(command, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((tmp_path / "ddp" / "checkpoints" / "final" / "taxoclip.json").read_text())
    assert meta["world_size"] == 2

    single = train(load_config({**raw, "run": {**raw["run"], "dir": str(tmp_path / "single")}}))
    two, one = losses(tmp_path / "ddp"), losses(single)
    assert sorted(two) == sorted(one) == list(range(1, 9))
    assert all(abs(two[s] - one[s]) < 1e-4 for s in one), (two, one)
    assert losses(tmp_path / "ddp", "val_loss") == pytest.approx(losses(single, "val_loss"), abs=1e-4)


@pytest.mark.parametrize("objective", ["ce_species", "ce_hierarchical"])
def test_cross_entropy_baselines_train(dataset, tmp_path, objective):
    from taxoclip.models import load_model
    from taxoclip.train.baselines import CLASSIFIER_CLASSES, CLASSIFIER_WEIGHTS

    raw = tiny_config(dataset, tmp_path / objective, objective=objective,
                      optim={"epochs": 6, "lr": 2e-3, "weight_decay": 0.0}, run={"checkpoint_every_steps": 100})
    run_dir = train(load_config(raw))
    trace = losses(run_dir)
    assert np.mean([trace[s] for s in range(21, 25)]) < np.mean([trace[s] for s in range(1, 5)]) - 0.3
    final = run_dir / "checkpoints" / "final"
    classes = json.loads((final / CLASSIFIER_CLASSES).read_text())
    assert classes["ranks"] == (["species"] if objective == "ce_species" else
                                ["kingdom", "phylum", "class", "order", "family", "genus", "species"])
    assert (final / CLASSIFIER_WEIGHTS).is_file()
    species = classes["classes"]["species"]
    assert len(species) == len(set(species)) >= 50 and all(len(name.split()) >= 7 for name in species)
    loaded = load_model(str(final))  # the image tower serves features to evaluate
    assert loaded.model.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 32)


def test_config_dataclass_defaults_are_the_bioclip_recipe():
    defaults = TrainConfig()
    assert defaults.optim.betas == [0.9, 0.98] and defaults.optim.eps == 1e-6 and defaults.optim.weight_decay == 0.2
    assert defaults.data.text_types == list(TRAINING_TEXT_TYPES) and defaults.data.text_sampling == "image"
