"""The paper's ablation in miniature: train every variant x seed of an ablation YAML, evaluate them
on the held-out species, and write a summary with the mean and spread over seeds.

    python scripts/ablation_mini.py configs/mini/ablation.yaml            # train (resumable), evaluate, summarise
    python scripts/ablation_mini.py configs/mini/ablation.yaml --summary-only

Every step goes through the public CLI (`taxoclip train`, `taxoclip eval ablation`, `taxoclip eval
hierarchy`), so the numbers are what a user would get. A finished run (checkpoints/final) is
skipped; an interrupted one continues with `--resume`. Writes under the YAML's `output`:
`train/<variant>-s<seed>/`, `eval/` (ablation tables), `hierarchy/`, and `summary.md`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
TAXOCLIP = [sys.executable, "-m", "taxoclip"]
RANK_TASKS = ["species", "genus", "family", "order", "class", "phylum", "kingdom"]


def run_name(variant: str, seed: int) -> str:
    return f"{variant}-s{seed}"


def overrides(settings: dict) -> list[str]:
    """KEY=VALUE arguments of `taxoclip train` (values written as YAML flow)."""
    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in settings.items()]


def train_all(spec: dict, output: Path) -> list[tuple[str, Path]]:
    runs = []
    for variant, settings in spec["variants"].items():
        for seed in spec["seeds"]:
            name = run_name(variant, seed)
            run_dir = output / "train" / name
            runs.append((name, run_dir / "checkpoints" / "final"))
            if runs[-1][1].is_dir():
                print(f"ablation: {name}: done already", file=sys.stderr)
                continue
            command = [*TAXOCLIP, "train", spec["recipe"], *overrides(spec.get("common", {})), *overrides(settings),
                       f"run.seed={seed}", f"run.dir={run_dir}"]
            if (run_dir / "checkpoints").is_dir():
                command.insert(len(TAXOCLIP) + 1, "--resume")
            print(f"ablation: training {name}", file=sys.stderr)
            subprocess.run(command, check=True, cwd=REPO)
    return runs


def evaluate_all(spec: dict, output: Path, runs: list[tuple[str, Path]]) -> None:
    evaluation = spec["evaluation"]
    models = [arg for name, path in runs for arg in ("--model", f"{name}={path}")]
    if not (output / "eval" / "ablation-long.csv").is_file():
        subprocess.run([*TAXOCLIP, "eval", "ablation", "--suite", evaluation["suite"], *models,
                        "--texts", ",".join(evaluation["texts"]), "--shots", *map(str, evaluation["shots"]),
                        "--trials", str(evaluation["trials"]), "--output", str(output / "eval")], check=True, cwd=REPO)
    if not (output / "hierarchy" / "hierarchy.csv").is_file():
        subprocess.run([*TAXOCLIP, "eval", "hierarchy", "--suite", evaluation["suite"], "--task",
                        evaluation["hierarchy_task"], *models, "--no-figure", "--output", str(output / "hierarchy")],
                       check=True, cwd=REPO)


def _split_name(table: pd.DataFrame) -> pd.DataFrame:
    parts = table["model"].str.rsplit("-s", n=1, expand=True)
    return table.assign(variant=parts[0], seed=parts[1].astype(int))


def _mean_spread(values: pd.Series) -> str:
    """'mean ± sd' over seeds, in percent (sd with ddof=0 so that 2 seeds give half their gap)."""
    return f"{100 * values.mean():.1f} ± {100 * values.std(ddof=0):.1f}"


def _table(frame: pd.DataFrame, rows: list[str], columns: list[str], row_key: str, column_key: str) -> list[str]:
    lines = ["| " + " | ".join([row_key, *columns]) + " |", "|---|" + "---:|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            picked = frame[(frame[row_key] == row) & (frame[column_key] == column)]["value"]
            cells.append(_mean_spread(picked) if len(picked) else "n/a")
        lines.append("| " + " | ".join([row, *cells]) + " |")
    return lines


def summarise(spec: dict, output: Path) -> str:
    """Markdown: zero-shot per text type (species), zero-shot and few-shot at every rank, hierarchy."""
    long = _split_name(pd.read_csv(output / "eval" / "ablation-long.csv"))
    long = long[long["error"].isna()]
    variants, texts = list(spec["variants"]), spec["evaluation"]["texts"]
    contrastive = spec.get("contrastive", variants)
    task_level = long[long["rank"].isna()]
    zero = task_level[(task_level["evaluation"] == "zero-shot") & task_level["variant"].isin(contrastive)]
    few = task_level[task_level["evaluation"] == "few-shot"]
    seeds = ", ".join(map(str, spec["seeds"]))
    out = [f"Mean ± standard deviation over seeds {seeds}, top-1 %, on the held-out species "
           f"({int(long['seed'].nunique())} seeds; zero-shot n/a for the CE baselines, which train no text tower).",
           "", "### Zero-shot at species rank, by test-time text type (paper Table 5)", ""]
    species = zero[zero["task"] == "species"]
    shots = few[few["task"] == "species"].assign(column=lambda f: f["k"].astype(str) + "-shot")
    merged = pd.concat([species.assign(column=species["text_type"]), shots])
    out += _table(merged, variants, [*texts, *(f"{k}-shot" for k in spec["evaluation"]["shots"])], "variant",
                  "column")
    for text in texts:
        out += ["", f"### Zero-shot at every rank, test-time text `{text}`", ""]
        out += _table(zero[zero["text_type"] == text], contrastive, RANK_TASKS, "variant", "task")
    for k in spec["evaluation"]["shots"]:
        out += ["", f"### {k}-shot (CL2N nearest centroid) at every rank", ""]
        picked = few[few["k"] == k]
        out += _table(picked, variants, RANK_TASKS, "variant", "task")
    hierarchy = _split_name(pd.read_csv(output / "hierarchy" / "hierarchy.csv"))
    chance = hierarchy.groupby("rank")["knn_chance"].first()
    for metric, title in (("knn_agreement", "kNN (k=10) agreement of the image embeddings"),
                          ("silhouette", "silhouette of the image embeddings (x100)")):
        out += ["", f"### Hierarchy: {title}, held-out species photos", ""]
        table = hierarchy.rename(columns={metric: "value"})
        out += _table(table, variants, RANK_TASKS, "variant", "rank")
        if metric == "knn_agreement":
            out += ["| chance | " + " | ".join(f"{100 * chance[r]:.1f}" for r in RANK_TASKS) + " |"]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="ablation YAML, e.g. configs/mini/ablation.yaml")
    parser.add_argument("--summary-only", action="store_true", help="only rewrite summary.md from finished results")
    args = parser.parse_args()
    spec = yaml.safe_load(Path(args.config).read_text())
    output = REPO / spec["output"]
    try:
        if not args.summary_only:
            runs = train_all(spec, output)
            evaluate_all(spec, output, runs)
        summary = summarise(spec, output)
    except subprocess.CalledProcessError as err:
        print(f"ablation: a step failed (exit {err.returncode}); run the same command again to resume", file=sys.stderr)
        return 1
    except FileNotFoundError as err:
        print(f"ablation: {err.filename}: not there yet (train and evaluate first)", file=sys.stderr)
        return 1
    (output / "summary.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
