"""Training throughput: taxoclip's loop vs open_clip's own trainer (`open_clip_train`), side by side.

Both train the same tiny CLIP (TINY_MODEL_CFG: ViT at 224 px, 32 px patches, from the same
initial weights) on the same webdataset shards of the shared photos (224 px JPEGs), with the
same batch size, optimizer settings, data workers and CPU threads, alternating runs. Throughput
is each trainer's own per-step figure (samples / time between consecutive steps, data loading
included), median over steps after the first few of each run.

`open_clip_train` reads a plain `txt` caption member, so the shards here also carry the
`taxon_com` caption as `txt`, and taxoclip is set to that one text type (same captions, same
tokens). Its webdataset code needs webdataset<=0.2.86 (the `open_clip_torch[training]` pin);
taxoclip uses webdataset 1.x, so the reference run gets 0.2.86 from a private directory on its
PYTHONPATH (installed there with pip on first use) and the project's environment is untouched.

    python benchmarks/bench_train.py [--samples 1024] [--batch 64] [--epochs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

REFERENCE_WEBDATASET = "webdataset==0.2.86"


def reference_webdataset_dir() -> Path:
    """A directory holding webdataset 0.2.86 for open_clip_train (pip-installed on first use)."""
    from taxoclip.cache import cache_dir

    target = cache_dir() / "bench" / "webdataset-0.2.86"
    if not (target / "webdataset").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                        REFERENCE_WEBDATASET], check=True)
    return target


def build_inputs(work: Path, samples: int) -> tuple[Path, Path]:
    """Shards (224 px, with a `txt` member) and the tiny initial model, both written once."""
    import pandas as pd
    from shards import write_dataset

    from taxoclip.models.standin import make_standin

    photos = Path(os.environ.get("TAXOCLIP_SHARED_PHOTOS", REPO.parent / "shared" / "data" / "nature-quizzer-train"))
    labels = pd.read_csv(photos / "labels.csv", dtype=str).fillna("")
    labels["path"] = [str(photos / p) for p in labels["filepath"]]
    data = write_dataset(labels, work / "data", n_train=samples, n_val=16, image_size=224, per_shard=256,
                         extra_txt="taxon_com")
    model = make_standin(work / "model", arch="tiny", seed=0)
    return data, model


def median_after_warmup(values: list[float], skip: int) -> float:
    return statistics.median(values[skip:] if len(values) > skip + 2 else values)


def run_taxoclip(data: Path, model: Path, run_dir: Path, args: argparse.Namespace, env: dict) -> tuple[float, float]:
    overrides = [
        f"model.init={model}", f"data.train={data / 'train'}", "data.val=null", "data.text_types=[taxon_com]",
        f"data.streams={max(1, args.workers)}", f"data.workers={args.workers}", "data.shuffle_buffer=1000",
        f"optim.epochs={args.epochs}", f"optim.global_batch_size={args.batch}", "optim.lr=1e-4",
        "optim.warmup_steps=10", "optim.precision=fp32", f"run.dir={run_dir}", "run.checkpoint_every_steps=100000",
        "run.log_every_steps=1", "run.progress=false", "run.tensorboard=false", f"run.threads={args.threads}",
    ]
    recipe = run_dir.parent / f"{run_dir.name}.yaml"
    recipe.write_text("objective: clip\n")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "taxoclip", "train", str(recipe), *overrides], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    rates = [json.loads(line)["samples_per_s"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    per_epoch = len(rates) // args.epochs
    steady = [r for e in range(args.epochs) for r in rates[e * per_epoch + args.skip:(e + 1) * per_epoch]]
    return statistics.median(steady), wall


def run_open_clip(data: Path, model: Path, logs: Path, name: str, args: argparse.Namespace,
                  env: dict) -> tuple[float, float]:
    shards = sorted((data / "train").glob("*.tar"))
    pattern = str(data / "train" / f"shard-{{000000..{len(shards) - 1:06d}}}.tar")
    env = {**env, "PYTHONPATH": os.pathsep.join([str(reference_webdataset_dir()), env.get("PYTHONPATH", "")])}
    command = [
        sys.executable, "-m", "open_clip_train.main", "--model", f"local-dir:{model}", "--train-data", pattern,
        "--train-num-samples", str(args.samples), "--dataset-type", "webdataset", "--batch-size", str(args.batch),
        "--epochs", str(args.epochs), "--workers", str(args.workers), "--lr", "1e-4", "--warmup", "10",
        "--wd", "0.2", "--beta1", "0.9", "--beta2", "0.98", "--eps", "1e-6", "--precision", "fp32",
        "--device", "cpu", "--logs", str(logs), "--name", name, "--log-every-n-steps", "1",
        "--save-frequency", "0", "--report-to", "", "--seed", "0",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"open_clip_train failed:\n{result.stderr[-3000:]}")
    log = (logs / name / "out.log").read_text()
    rates_by_epoch: dict[int, list[float]] = {}
    for epoch, rate in re.findall(r"Train Epoch: (\d+) \[.*?Batch \(t\): [\d.]+, ([\d.]+)/s,", log):
        rates_by_epoch.setdefault(int(epoch), []).append(float(rate))
    steady = [r for rates in rates_by_epoch.values() for r in rates[args.skip:]]
    return statistics.median(steady), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of each trainer")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each trainer")
    parser.add_argument("--skip", type=int, default=3, help="steps per epoch left out as warm-up")
    args = parser.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = str(args.threads)
    reference_webdataset_dir()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        data, model = build_inputs(work, args.samples)
        ours, theirs = [], []
        for repeat in range(args.repeats):
            ours.append(run_taxoclip(data, model, work / f"taxoclip-{repeat}", args, env))
            theirs.append(run_open_clip(data, model, work / "open_clip_logs", f"run-{repeat}", args, env))
            print(f"repeat {repeat}: taxoclip {ours[-1][0]:.1f} samples/s (wall {ours[-1][1]:.1f} s), "
                  f"open_clip_train {theirs[-1][0]:.1f} samples/s (wall {theirs[-1][1]:.1f} s)", flush=True)
    ours_rate = statistics.median(r for r, _ in ours)
    theirs_rate = statistics.median(r for r, _ in theirs)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs; tiny CLIP (TINY_MODEL_CFG, 224 px), "
          f"{args.samples} samples x {args.epochs} epochs, batch {args.batch}, {args.workers} data worker(s), "
          f"{args.threads} thread(s), fp32")
    print(f"taxoclip train      : {ours_rate:8.1f} samples/s (median of per-step rates)")
    print(f"open_clip_train     : {theirs_rate:8.1f} samples/s")
    print(f"ratio (ours/theirs) : {ours_rate / theirs_rate:8.2f}x   (target >= 1.0x)")


if __name__ == "__main__":
    main()
