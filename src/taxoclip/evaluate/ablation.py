"""The paper-style ablation table: several checkpoints x the text type used at test time.

BioCLIP's Table 5 compares models trained with different text types by their zero-shot
accuracy when queried with each text type (common, scientific, taxonomic, scientific+common,
taxonomic+common), with few-shot accuracy (text-free) beside it. `run_ablation` produces that
table for any checkpoints and tasks: one row per checkpoint, one column per test-time text type,
then the k-shot columns (CL2N, same supports for every checkpoint). The long CSV also holds
zero-shot accuracy at every rank for each text type.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import TaxoclipError
from .suite import ModelEntry
from .tasks import TaskSpec

ABLATION_TEXT_TYPES: tuple[str, ...] = ("com", "sci", "taxon", "sci_com", "taxon_com")
"""Test-time text types in the column order of the paper's Table 5."""

LONG_COLUMNS = ["model", "model_label", "task", "evaluation", "text_type", "k", "rank", "value", "std", "error"]


@dataclass
class AblationResult:
    """The long results and the per-task tables (percent) written."""

    results: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    files: list[Path]


def _model_rows(entry: ModelEntry, loaded, specs: list[TaskSpec], text_types: tuple[str, ...], shots: tuple[int, ...],
                trials: int, seed: int, templates: str, supports: dict, options: dict) -> list[dict]:
    from .features import task_features
    from .fewshot import draw_supports, evaluate_supports
    from .tasks import load_task
    from .zeroshot import zero_shot

    rows = []
    base = {"model": entry.name, "model_label": loaded.identity.label, "error": ""}
    for spec in specs:
        task = load_task(spec)
        features = task_features(loaded, task, **options)
        for text_type in text_types:
            result = zero_shot(loaded, task, text_type, templates, features=features)
            rows.append({**base, "task": spec.name, "evaluation": "zero-shot", "text_type": text_type, "k": 0,
                         "rank": "", "value": result.top1, "std": float("nan")})
            for record in result.per_rank.to_dict("records"):
                rows.append({**base, "task": spec.name, "evaluation": "zero-shot", "text_type": text_type, "k": 0,
                             "rank": record["rank"], "value": record["accuracy"], "std": float("nan")})
        if shots:
            if spec.name not in supports:  # the same supports for every checkpoint
                supports[spec.name] = draw_supports(task, shots, trials, seed, usable=features.ok)
            table = evaluate_supports(features.features, task, supports[spec.name], ("cl2n",), usable=features.ok)
            for k in shots:
                values = table.loc[table["k"] == k, "accuracy"].to_numpy()
                rows.append({**base, "task": spec.name, "evaluation": "few-shot", "text_type": "", "k": k, "rank": "",
                             "value": float(values.mean()) if len(values) else float("nan"),
                             "std": float(np.std(values)) if len(values) else float("nan")})
    return rows


def ablation_table(results: pd.DataFrame, task: str | None, models: list[str], text_types: tuple[str, ...],
                   shots: tuple[int, ...]) -> pd.DataFrame:
    """Model x (text types, k-shot) in percent, for one task or (task=None) averaged over tasks."""
    chosen = results[(results["rank"] == "") & (results["error"] == "")]
    if task is not None:
        chosen = chosen[chosen["task"] == task]
    column = np.where(chosen["evaluation"] == "few-shot", chosen["k"].astype(str) + "-shot", chosen["text_type"])
    chosen = chosen.assign(column=column)
    table = chosen.pivot_table(index="model", columns="column", values="value", aggfunc="mean")
    table = table.reindex(index=models, columns=[*text_types, *[f"{k}-shot" for k in shots]]) * 100.0
    table.index.name = "model"
    return table.astype(float)


def rank_table(results: pd.DataFrame, task: str) -> pd.DataFrame:
    """(model, text type) x rank zero-shot accuracy in percent for one task."""
    from ..taxonomy.taxon import RANKS

    chosen = results[(results["task"] == task) & (results["rank"] != "") & (results["error"] == "")]
    if chosen.empty:
        return pd.DataFrame()
    table = chosen.pivot_table(index=["model", "text_type"], columns="rank", values="value", aggfunc="first",
                               sort=False)
    return table.reindex(columns=[r for r in RANKS if r in table.columns]) * 100.0


def run_ablation(models: list[ModelEntry], tasks: list[TaskSpec], output: str | os.PathLike,
                 text_types: tuple[str, ...] = ABLATION_TEXT_TYPES, shots: tuple[int, ...] = (1, 5),
                 trials: int = 5, seed: int = 0, templates: str = "bioclip", device: str = "auto",
                 batch_size: int = 64, workers: int | None = None, progress: bool = True) -> AblationResult:
    """Evaluate every checkpoint on every task with every test-time text type; write the tables."""
    from ..models import load_model
    from .features import pick_device
    from .fewshot import write_supports
    from .report import markdown_table, write_table

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    options = {"batch_size": batch_size, "workers": workers, "progress": progress}
    rows: list[dict] = []
    supports: dict = {}
    for entry in models:
        try:
            loaded = load_model(entry.model, device=pick_device(device))
            rows += _model_rows(entry, loaded, tasks, text_types, shots, trials, seed, templates, supports, options)
        except TaxoclipError as err:
            print(f"taxoclip: {entry.name}: {err}", file=sys.stderr)
            rows.append({"model": entry.name, "model_label": "", "task": "", "evaluation": "", "text_type": "",
                         "k": 0, "rank": "", "value": float("nan"), "std": float("nan"), "error": str(err)})
    results = pd.DataFrame(rows, columns=LONG_COLUMNS)
    files = [output / "ablation-long.csv"]
    results.to_csv(files[0], index=False)
    for name, chosen in supports.items():
        files.append(write_supports(chosen, output / "supports" / f"{name}.json"))
    names = [m.name for m in models]
    tables, sections = {}, ["# Ablation: checkpoints x test-time text type\n",
                            "Zero-shot top-1 (%) per text type used at test time (81 templates); k-shot: CL2N, "
                            f"mean of {trials} trials (same supports for every checkpoint).\n"]
    keys = [t.name for t in tasks] + (["mean"] if len(tasks) > 1 else [])
    for key in keys:
        table = ablation_table(results, None if key == "mean" else key, names, text_types, shots)
        tables[key] = table
        files += write_table(table, output / f"ablation-{key}", f"Ablation on {key}" if key != "mean"
                             else "Ablation, mean over tasks", chart=True)
        sections.append(f"\n## {key}\n\n{markdown_table(table)}")
        if key != "mean":
            ranks = rank_table(results, key)
            if not ranks.empty:
                sections.append(f"\nZero-shot top-1 (%) at each rank, {key}:\n\n{markdown_table(ranks)}")
    errors = results[results["error"] != ""]
    if len(errors):
        sections.append("\n## Failures\n\n" + markdown_table(errors[["model", "error"]], index=False))
    (output / "ablation.md").write_text("\n".join(sections))
    files.append(output / "ablation.md")
    return AblationResult(results, tables, files)
