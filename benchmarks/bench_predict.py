"""taxoclip predict vs pybioclip, side by side, on the same stand-in checkpoint, bank and photos.

A random ViT-B/16 in the official layout, with a random 450,000-taxa tree-of-life bank, is
installed in a temporary Hugging Face cache as `imageomics/bioclip` and the dataset
`imageomics/TreeOfLife-10M`, so that both tools load it through their own code paths,
offline. Every run is a separate process; we report its wall time (startup included),
images/s, and peak resident memory (`wait4` max RSS, which covers waited-for children).

Sections (all by default):
  predict   species top-5 on --photos photos: taxoclip (default preprocessing and --squash,
            cold and warm bank cache) vs pybioclip; 1-photo runs give the startup cost
  steady    both tools loaded in one process and timed alternately on --steady-photos photos
            (startup excluded; changes in machine load hit both alike)
  genus     --rank genus on --genus-photos photos (pybioclip sums ranks with a Python loop)
  labels    --classes custom labels on --label-photos photos: taxoclip cold (empty cache) and
            warm, pybioclip (encodes the labels on every run)
  memory    tiny stand-in, same 450,000-taxa bank: taxoclip at --memory image counts,
            pybioclip at --pybioclip-memory counts

    python benchmarks/bench_predict.py --json benchmarks/results/predict.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
PHOTOS = Path(os.environ.get("TAXOCLIP_SHARED_PHOTOS", REPO.parent / "shared" / "data" / "nature-quizzer-train"))
BANK_SIZE = 450_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# A forked child inherits its parent's peak RSS (Linux records the old image's high-water mark at
# exec), so commands are started from this small wrapper process, not from the benchmark itself.
_WRAPPER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
json.dump({"wall": time.perf_counter() - start, "maxrss_kib": usage.ru_maxrss,
           "exit": os.waitstatus_to_exitcode(status)}, open(sys.argv[1], "w"))
"""


def measured(command: list[str], env: dict[str, str], label: str) -> dict:
    """Run a command to completion; wall seconds and peak RSS (MiB) of it and its waited-for children."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        stats, errors_path = Path(scratch) / "stats.json", Path(scratch) / "stderr"
        with open(errors_path, "wb") as errors:
            subprocess.run([sys.executable, "-c", _WRAPPER, str(stats), *command], env=env,
                           stdout=subprocess.DEVNULL, stderr=errors, check=False)
        numbers = json.loads(stats.read_text())
        error_text = errors_path.read_text(errors="replace")
    result = {"run": label, "wall_s": round(numbers["wall"], 2), "max_rss_mib": round(numbers["maxrss_kib"] / 1024, 1),
              "exit": numbers["exit"], "load_before": round(load, 2)}
    if numbers["exit"] != 0:
        result["stderr"] = error_text[-2000:]
        log(f"  !! {label} failed ({numbers['exit']}): {error_text[-600:]}")
    log(f"  {label}: {result['wall_s']} s, {result['max_rss_mib']} MiB (load {load:.1f})")
    return result


def build_standins(work: Path, arch: str, name: str) -> Path:
    """A random `arch` model + random 450K bank installed as imageomics/bioclip + TreeOfLife-10M."""
    from taxoclip.models import layout
    from taxoclip.models.standin import install_in_hub_cache, make_standin

    hub = work / f"hf-{name}" / "hub"
    if (hub / "datasets--imageomics--TreeOfLife-10M").is_dir():
        return hub
    log(f"building the {arch} stand-in with a {BANK_SIZE:,}-taxa bank ...")
    source = work / f"standin-{name}"
    make_standin(source, arch=arch, random_bank_size=BANK_SIZE)
    model_only, bank_only = work / f"model-{name}", work / f"bank-{name}"
    model_only.mkdir(exist_ok=True)
    bank_only.mkdir(exist_ok=True)
    for file in (layout.CONFIG_FILE, layout.WEIGHTS_SAFETENSORS):
        shutil.move(source / file, model_only / file)
    shutil.move(source / layout.TOL_DIR, bank_only / layout.TOL_DIR)
    install_in_hub_cache(model_only, "imageomics/bioclip", hub)
    install_in_hub_cache(bank_only, "imageomics/TreeOfLife-10M", hub, repo_type="dataset")
    for path in (source, model_only, bank_only):
        shutil.rmtree(path, ignore_errors=True)
    return hub


def environment(hub: Path, cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1",
            "TAXOCLIP_CACHE": str(cache), "TQDM_DISABLE": "1"}


def ours(*args: str) -> list[str]:
    return [sys.executable, "-m", "taxoclip", "predict", "--model", "bioclip", "-q", "--overwrite", *args]


def theirs(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("bioclip")), "predict", "--model", "hf-hub:imageomics/bioclip",
            "--format", "csv", *args]


def photos(n: int) -> list[str]:
    import pandas as pd

    table = pd.read_csv(PHOTOS / "labels.csv", dtype=str)
    return [str(PHOTOS / p) for p in sorted(table["filepath"])[:n]]


def agreement(ours_csv: Path, theirs_csv: Path) -> dict:
    """Top-k agreement of taxoclip --squash and pybioclip (same preprocessing, model and bank)."""
    import pandas as pd

    a = pd.read_csv(ours_csv, dtype={"species": str})
    b = pd.read_csv(theirs_csv, dtype={"species": str}).rename(columns={"file_name": "path"})
    b["k"] = b.groupby("path").cumcount() + 1
    merged = a.merge(b, on=["path", "k"], suffixes=("", "_pybioclip"))
    return {"rows": len(merged), "same_species": float((merged["species"] == merged["species_pybioclip"]).mean()),
            "max_score_diff": float((merged["score"] - merged["score_pybioclip"]).abs().max())}


def section_predict(work: Path, hub: Path, args: argparse.Namespace, pybioclip: bool) -> dict:
    out, results = work / "out", {}
    out.mkdir(exist_ok=True)
    images = photos(args.photos)
    cache = work / "cache-predict"
    shutil.rmtree(cache, ignore_errors=True)
    env = environment(hub, cache)
    log(f"predict: species top-5 on {len(images)} photos")
    results["taxoclip_first_use"] = measured(ours(*images, "-o", str(out / "first.csv")), env,
                                             "taxoclip (first use: converts the bank)")
    # Alternate the tools (A B B A ...) and keep each one's best run: the machine may be shared.
    trials: dict[str, list[dict]] = {"taxoclip": [], "pybioclip": []}
    for trial in range(args.repeat):
        order = ("taxoclip", "pybioclip") if trial % 2 == 0 else ("pybioclip", "taxoclip")
        for tool in order:
            if tool == "taxoclip":
                trials[tool].append(measured(ours(*images, "-o", str(out / "ours.csv")), env, "taxoclip"))
            elif pybioclip:
                trials[tool].append(measured(theirs("--output", str(out / "theirs.csv"), *images), env, "pybioclip"))
    for tool, runs in trials.items():
        if runs:
            results[tool] = min(runs, key=lambda r: r["wall_s"]) | {"all_wall_s": [r["wall_s"] for r in runs]}
    results["taxoclip_squash"] = measured(ours(*images, "--squash", "-o", str(out / "ours-squash.csv")), env,
                                          "taxoclip --squash")
    results["taxoclip_1"] = measured(ours(images[0], "-o", str(out / "one.csv")), env, "taxoclip, 1 photo")
    if pybioclip:
        results["pybioclip_1"] = measured(theirs("--output", str(out / "theirs-one.csv"), images[0]), env,
                                          "pybioclip, 1 photo")
        if results["pybioclip"]["exit"] == 0 and results["taxoclip_squash"]["exit"] == 0:
            results["agreement_squash_vs_pybioclip"] = agreement(out / "ours-squash.csv", out / "theirs.csv")
    for name in list(results):
        if "wall_s" in results[name] and not name.endswith("_1"):
            results[name]["images"] = len(images)
            results[name]["images_per_s"] = round(len(images) / results[name]["wall_s"], 3)
    return results


_STEADY = """
import json, statistics, sys, time
photos, rounds, out = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
from bioclip import Rank, TreeOfLifeClassifier
from taxoclip.predict import Predictor
theirs = TreeOfLifeClassifier(model_str="hf-hub:imageomics/bioclip", device="cpu")
ours = Predictor("bioclip")
ours.predict(photos[:2]); theirs.predict(photos[:2], Rank.SPECIES, k=5)   # warm both up
times = {"taxoclip": [], "pybioclip": []}
for r in range(rounds):
    for tool in (("taxoclip", "pybioclip") if r % 2 == 0 else ("pybioclip", "taxoclip")):
        start = time.perf_counter()
        if tool == "taxoclip":
            ours.predict(photos, k=5)
        else:
            theirs.predict(photos, Rank.SPECIES, k=5)
        times[tool].append(time.perf_counter() - start)
json.dump(times, open(out, "w"))
"""


def section_steady(work: Path, hub: Path, args: argparse.Namespace, pybioclip: bool) -> dict:
    """Both tools loaded in one process, timed alternately on the same photos: startup excluded and
    drifts in machine load shared out evenly."""
    if not pybioclip:
        return {}
    images = photos(args.steady_photos)
    out = work / "out" / "steady.json"
    env = environment(hub, work / "cache-predict")
    log(f"steady: species top-5 on {len(images)} photos, {args.rounds} alternating rounds in one process")
    subprocess.run([sys.executable, "-c", _STEADY, json.dumps(images), str(args.rounds), str(out)], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    times = json.loads(out.read_text())
    ratios = [t / o for o, t in zip(times["taxoclip"], times["pybioclip"])]
    result = {"images": len(images), "seconds": times, "ratio_per_round": [round(r, 3) for r in ratios],
              "median_ratio": round(sorted(ratios)[len(ratios) // 2], 3),
              "taxoclip_images_per_s": round(len(images) / min(times["taxoclip"]), 3),
              "pybioclip_images_per_s": round(len(images) / min(times["pybioclip"]), 3)}
    log(f"  {result}")
    return result


def section_genus(work: Path, hub: Path, args: argparse.Namespace, pybioclip: bool) -> dict:
    out, results = work / "out", {}
    images = photos(args.genus_photos)
    env = environment(hub, work / "cache-predict")
    log(f"genus: --rank genus top-5 on {len(images)} photos")
    results["taxoclip"] = measured(ours(*images, "--rank", "genus", "-o", str(out / "genus.csv")), env, "taxoclip")
    if pybioclip:
        results["pybioclip"] = measured(theirs("--rank", "genus", "--output", str(out / "genus-theirs.csv"),
                                               *images), env, "pybioclip")
    for result in results.values():
        result["images"] = len(images)
        result["images_per_s"] = round(len(images) / result["wall_s"], 3)
    return results


def section_labels(work: Path, hub: Path, args: argparse.Namespace, pybioclip: bool) -> dict:
    import pandas as pd

    out, results = work / "out", {}
    images = photos(args.label_photos)
    table = pd.read_csv(PHOTOS / "labels.csv", dtype=str)
    labels = list(dict.fromkeys(table["species_label"]))[: args.classes]
    label_file = out / "labels.txt"
    label_file.write_text("\n".join(labels) + "\n")
    cache = work / "cache-labels"
    shutil.rmtree(cache, ignore_errors=True)
    env = environment(hub, cache)
    log(f"labels: {len(labels)} custom labels on {len(images)} photos")
    command = ours(*images, "--labels-file", str(label_file), "-o", str(out / "labels.csv"))
    results["taxoclip_cold"] = measured(command, env, "taxoclip, cold (empty cache)")
    results["taxoclip_warm"] = measured(command, env, "taxoclip, warm")
    if pybioclip:
        results["pybioclip"] = measured(theirs("--cls", str(label_file), "--output", str(out / "labels-theirs.csv"),
                                               *images), env, "pybioclip")
    for result in results.values():
        result["classes"], result["images"] = len(labels), len(images)
    return results


def section_memory(work: Path, args: argparse.Namespace, pybioclip: bool) -> dict:
    hub = build_standins(work, "tiny", "tiny")
    results = {}
    base = photos(50)
    largest = max(args.memory + (args.pybioclip_memory if pybioclip else []))
    links = work / "links"
    if not links.is_dir() or len(list(links.iterdir())) < largest:
        shutil.rmtree(links, ignore_errors=True)
        links.mkdir()
        for i in range(largest):
            (links / f"{i:06d}.jpg").symlink_to(base[i % len(base)])
    env = environment(hub, work / "cache-memory")
    out = work / "out"
    for count in args.memory:
        listing = out / f"memory-{count}.txt"
        listing.write_text("\n".join(str(links / f"{i:06d}.jpg") for i in range(count)) + "\n")
        results[f"taxoclip_{count}"] = measured(ours(str(listing), "-o", str(out / f"memory-{count}.csv")), env,
                                                f"taxoclip, {count} images (tiny model)")
    if pybioclip:
        for count in args.pybioclip_memory:
            files = [str(links / f"{i:06d}.jpg") for i in range(count)]
            results[f"pybioclip_{count}"] = measured(theirs("--output", str(out / f"memory-theirs-{count}.csv"),
                                                            *files), env, f"pybioclip, {count} images (tiny model)")
    return results


def report(results: dict) -> str:
    lines = []
    p = results.get("predict", {})
    if p:
        lines += ["## species top-5, ViT-B/16 stand-in, 450,000-taxa bank", "",
                  "| run | photos | wall s | images/s | peak RSS MiB |", "|---|---|---|---|---|"]
        for r in p.values():
            if "wall_s" in r:
                lines.append(f"| {r['run']} | {r.get('images', 1)} | {r['wall_s']} | {r.get('images_per_s', '')} "
                             f"| {r['max_rss_mib']} |")
        if "pybioclip" in p and p["pybioclip"]["exit"] == 0:
            theirs_ = p["pybioclip"]
            for key in ("taxoclip", "taxoclip_squash"):
                lines.append(f"\n{key} / pybioclip: images/s x{p[key]['images_per_s'] / theirs_['images_per_s']:.2f}, "
                             f"peak memory x{p[key]['max_rss_mib'] / theirs_['max_rss_mib']:.2f}")
            steady = {}
            for tool, full, one in (("taxoclip", "taxoclip", "taxoclip_1"), ("pybioclip", "pybioclip", "pybioclip_1")):
                n = p[full]["images"]
                steady[tool] = (n - 1) / max(1e-9, p[full]["wall_s"] - p[one]["wall_s"])
                lines.append(f"{tool}: startup (1 photo) {p[one]['wall_s']} s; after startup {steady[tool]:.2f} images/s")
            lines.append(f"after-startup ratio x{steady['taxoclip'] / steady['pybioclip']:.2f}")
        if "agreement_squash_vs_pybioclip" in p:
            lines.append(f"taxoclip --squash vs pybioclip: {p['agreement_squash_vs_pybioclip']}")
    steady = results.get("steady")
    if steady:
        lines += ["", f"## after startup: both tools in one process, {steady['images']} photos, alternating rounds",
                  "", f"taxoclip {steady['taxoclip_images_per_s']} images/s, pybioclip "
                  f"{steady['pybioclip_images_per_s']} images/s (best rounds); ratio per round "
                  f"{steady['ratio_per_round']}, median x{steady['median_ratio']}"]
    for name, title in (("genus", "--rank genus"), ("labels", "custom labels")):
        section = results.get(name, {})
        if section:
            lines += ["", f"## {title}", "", "| run | wall s | peak RSS MiB |", "|---|---|---|"]
            lines += [f"| {r['run']} | {r['wall_s']} | {r['max_rss_mib']} |" for r in section.values()]
            if "pybioclip" in section:
                for key, r in section.items():
                    if key != "pybioclip":
                        lines.append(f"{key}: x{section['pybioclip']['wall_s'] / r['wall_s']:.2f} faster than pybioclip")
    memory = results.get("memory", {})
    if memory:
        lines += ["", "## peak memory vs number of images (tiny model, 450,000-taxa bank)", "",
                  "| run | peak RSS MiB |", "|---|---|"]
        lines += [f"| {r['run']} | {r['max_rss_mib']} |" for r in memory.values()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="predict,steady,genus,labels,memory")
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each tool (best kept)")
    parser.add_argument("--steady-photos", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of the steady section")
    parser.add_argument("--genus-photos", type=int, default=8)
    parser.add_argument("--label-photos", type=int, default=8)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--memory", type=lambda s: [int(x) for x in s.split(",")], default=[100, 10_000])
    parser.add_argument("--pybioclip-memory", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1_000])
    parser.add_argument("--work", help="working directory (kept; stand-ins are reused); default: a temporary one")
    parser.add_argument("--skip-pybioclip", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    sys.path.insert(0, str(SRC))
    pybioclip = not args.skip_pybioclip and Path(sys.executable).with_name("bioclip").exists()
    if not pybioclip and not args.skip_pybioclip:
        log("pybioclip is not installed (pip install pybioclip==2.1.6): timing taxoclip alone")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    results: dict = {"machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")},
                     "pybioclip": _version("pybioclip") if pybioclip else None, "taxoclip": _version("taxoclip")}
    try:
        if {"predict", "steady", "genus", "labels"} & set(sections):
            hub = build_standins(work, "ViT-B-16", "vitb16")
        if "predict" in sections:
            results["predict"] = section_predict(work, hub, args, pybioclip)
        if "steady" in sections:
            results["steady"] = section_steady(work, hub, args, pybioclip)
        if "genus" in sections:
            results["genus"] = section_genus(work, hub, args, pybioclip)
        if "labels" in sections:
            results["labels"] = section_labels(work, hub, args, pybioclip)
        if "memory" in sections:
            results["memory"] = section_memory(work, args, pybioclip)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
