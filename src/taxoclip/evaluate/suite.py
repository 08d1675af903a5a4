"""Benchmark suites: a YAML file names models and tasks; every model is run on every task.

```yaml
name: shared-photos
data_root: ../..          # optional; relative to this file. Task paths are relative to it.
models:                   # `NAME: SPEC` entries, or plain specs (named after themselves)
  - {name: taxoclip-mini, model: mini}
metrics: [zeroshot, fewshot]
fewshot: {shots: [1, 5], trials: 5, seed: 0}
templates: bioclip
tasks:
  - {name: species, metadata: ../shared/data/nature-quizzer-train/labels.csv, rank: species, text: taxon_com}
```

Outputs in the output folder: `results.csv` (long: one row per model, task and metric),
`<metric>.md/.csv/.png` (one row per model, one column per task, a mean column, bar chart),
`suite.md` (all tables), `supports/<task>.json` (few-shot supports, shared by all models), and
`runs/<model>/<task>.json` per finished run, so that a rerun resumes and only does what is missing.
A model or task that fails is recorded with its error and the suite goes on.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import TaxoclipError
from .features import slug
from .tasks import TaskSpec

SUITE_METRICS: tuple[str, ...] = ("zeroshot", "fewshot")
TITLES = {"zeroshot": "Zero-shot top-1 accuracy (%)", "fewshot-{k}": "{k}-shot accuracy (%), CL2N, mean of trials"}


@dataclass(frozen=True)
class ModelEntry:
    """A model of a suite: the row name in tables and its `--model` spec."""

    name: str
    model: str

    @classmethod
    def parse(cls, text: str) -> ModelEntry:
        """`NAME=SPEC` or a bare SPEC (named after the spec's last path part)."""
        if "=" in text and not text.startswith(("hf-hub:", "/", ".")):
            name, spec = text.split("=", 1)
            return cls(name.strip(), spec.strip())
        return cls(Path(text.rstrip("/")).name or text, text)


@dataclass
class Suite:
    """A parsed suite file."""

    name: str
    models: list[ModelEntry]
    tasks: list[TaskSpec]
    metrics: list[str] = field(default_factory=lambda: ["zeroshot"])
    shots: tuple[int, ...] = (1, 5)
    trials: int = 5
    seed: int = 0
    templates: str = "bioclip"
    description: str = ""
    path: Path | None = None


def read_suite(path: str | os.PathLike, data_root: str | os.PathLike | None = None,
               models: list[str] | None = None, tasks: list[str] | None = None, require_models: bool = True) -> Suite:
    """Parse a suite YAML; `data_root`, `models` (`NAME=SPEC`) and `tasks` (names) override the file."""
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise TaxoclipError(f"cannot read suite {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(document, dict) or "tasks" not in document:
        raise TaxoclipError(f"{path} is not a suite: it needs a `tasks` list")
    if data_root is not None:
        base = Path(data_root)
    elif document.get("data_root") is not None:
        base = path.parent / str(document["data_root"])
    else:
        base = Path.cwd()
    specs = [TaskSpec.from_dict(entry, base) for entry in document["tasks"]]
    if tasks:
        known = {spec.name for spec in specs}
        missing = [t for t in tasks if t not in known]
        if missing:
            raise TaxoclipError(f"suite {path} has no task {missing[0]!r} (tasks: {', '.join(sorted(known))})")
        specs = [spec for spec in specs if spec.name in tasks]
    entries = [ModelEntry.parse(m) for m in models] if models else [_model_entry(m) for m in document.get("models") or []]
    if not entries and require_models:
        raise TaxoclipError(f"suite {path} names no models; add `models:` or pass --model")
    metrics = list(document.get("metrics") or ["zeroshot"])
    unknown = [m for m in metrics if m not in SUITE_METRICS]
    if unknown:
        raise TaxoclipError(f"suite {path}: unknown metric {unknown[0]!r} (expected {', '.join(SUITE_METRICS)})")
    fewshot = document.get("fewshot") or {}
    return Suite(str(document.get("name") or path.stem), entries, specs, metrics,
                 tuple(int(k) for k in fewshot.get("shots", (1, 5))), int(fewshot.get("trials", 5)),
                 int(fewshot.get("seed", 0)), str(document.get("templates", "bioclip")),
                 str(document.get("description", "")), path)


def _model_entry(entry: Any) -> ModelEntry:
    if isinstance(entry, str):
        return ModelEntry.parse(entry)
    if isinstance(entry, dict) and "model" in entry:
        return ModelEntry(str(entry.get("name") or entry["model"]), str(entry["model"]))
    raise TaxoclipError(f"a suite model must be a spec or {{name, model}}: {entry!r}")


@dataclass
class SuiteResult:
    """All results of a suite run: the long table and the files written."""

    results: pd.DataFrame  # model, model_label, task, metric, value, std, error
    tables: dict[str, pd.DataFrame]
    files: list[Path]


def _run_one(loaded: Any, spec: TaskSpec, suite: Suite, supports_dir: Path, run_options: dict) -> list[dict]:
    from .features import task_features
    from .fewshot import draw_supports, evaluate_supports, read_supports, write_supports
    from .tasks import load_task
    from .zeroshot import zero_shot

    task = load_task(spec)
    features = task_features(loaded, task, **run_options)
    rows = []
    if "zeroshot" in suite.metrics:
        result = zero_shot(loaded, task, spec.text, suite.templates, features=features)
        rows.append({"metric": "zeroshot", "value": result.top1, "std": float("nan"),
                     "detail": {"top5": result.top5, "mean_per_class": result.mean_per_class,
                                "per_rank": result.per_rank.to_dict("records"), "text_type": result.text_type,
                                "unresolved": result.unresolved, "images": result.images,
                                "classes": result.classes, "failed": len(result.failed)}})
    if "fewshot" in suite.metrics:
        supports_file = supports_dir / f"{slug(spec.name)}.json"
        if supports_file.is_file():  # shared by every model of the suite
            supports = read_supports(supports_file)
        else:
            supports = draw_supports(task, suite.shots, suite.trials, suite.seed, usable=features.ok)
            write_supports(supports, supports_file)
        trials = evaluate_supports(features.features, task, supports, ("cl2n",), usable=features.ok)
        for k in suite.shots:
            values = trials[trials["k"] == k]["accuracy"]
            rows.append({"metric": f"fewshot-{k}", "value": float(values.mean()) if len(values) else float("nan"),
                         "std": float(values.std(ddof=0)) if len(values) else float("nan"),
                         "detail": {"trials": values.tolist(), "left_out": len(supports.left_out.get(k, []))}})
    return rows


def run_suite(suite: Suite, output: str | os.PathLike, device: str = "auto", batch_size: int = 64,
              workers: int | None = None, overwrite: bool = False, progress: bool = True) -> SuiteResult:
    """Run every model of the suite on every task, resuming finished runs; write tables and charts."""
    from ..models import load_model
    from .features import pick_device

    output = Path(output)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    options = {"batch_size": batch_size, "workers": workers, "progress": progress}
    for entry in suite.models:
        run_dir = output / "runs" / slug(entry.name)
        pending = [spec for spec in suite.tasks if overwrite or not (run_dir / f"{slug(spec.name)}.json").is_file()]
        if not pending:
            continue
        try:
            loaded = load_model(entry.model, device=pick_device(device))
        except TaxoclipError as err:
            for spec in pending:
                _save_run(run_dir, spec.name, entry, None, [], error=f"model: {err}")
            print(f"taxoclip: model {entry.name}: {err}", file=sys.stderr)
            continue
        for spec in pending:
            try:
                rows = _run_one(loaded, spec, suite, output / "supports", options)
                _save_run(run_dir, spec.name, entry, loaded.identity.label, rows)
            except TaxoclipError as err:
                _save_run(run_dir, spec.name, entry, loaded.identity.label, [], error=str(err))
                print(f"taxoclip: {entry.name} on {spec.name}: {err}", file=sys.stderr)
    results = collect_runs(output, suite)
    tables, files = write_suite_tables(results, suite, output)
    return SuiteResult(results, tables, files)


def _save_run(run_dir: Path, task: str, entry: ModelEntry, label: str | None, rows: list[dict],
              error: str = "") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    document = {"model": entry.name, "spec": entry.model, "model_label": label, "task": task,
                "error": error, "metrics": rows}
    path = run_dir / f"{slug(task)}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=1, default=float))
    if error:  # a failed run is reported but retried next time
        path = path.with_suffix(".error.json")
        os.replace(tmp, path)
        return
    os.replace(tmp, path)
    path.with_suffix(".error.json").unlink(missing_ok=True)


def collect_runs(output: Path, suite: Suite) -> pd.DataFrame:
    """The long results table from the saved runs of the suite's models and tasks."""
    rows = []
    for entry in suite.models:
        for spec in suite.tasks:
            base = output / "runs" / slug(entry.name) / f"{slug(spec.name)}.json"
            path = base if base.is_file() else base.with_suffix(".error.json")
            if not path.is_file():
                continue
            document = json.loads(path.read_text())
            for metric in document["metrics"]:
                rows.append({"model": entry.name, "model_label": document["model_label"], "task": spec.name,
                             "metric": metric["metric"], "value": metric["value"], "std": metric["std"], "error": ""})
                for rank in metric.get("detail", {}).get("per_rank", []):  # zeroshot@family etc.
                    rows.append({"model": entry.name, "model_label": document["model_label"], "task": spec.name,
                                 "metric": f"{metric['metric']}@{rank['rank']}", "value": rank["accuracy"],
                                 "std": float("nan"), "error": ""})
            if document["error"]:
                rows.append({"model": entry.name, "model_label": document["model_label"], "task": spec.name,
                             "metric": "error", "value": float("nan"), "std": float("nan"), "error": document["error"]})
    return pd.DataFrame(rows, columns=["model", "model_label", "task", "metric", "value", "std", "error"])


def metric_names(suite: Suite) -> list[str]:
    names = ["zeroshot"] if "zeroshot" in suite.metrics else []
    return names + ([f"fewshot-{k}" for k in suite.shots] if "fewshot" in suite.metrics else [])


def metric_title(metric: str) -> str:
    if metric.startswith("fewshot-"):
        return TITLES["fewshot-{k}"].format(k=metric.split("-", 1)[1])
    return TITLES[metric]


def write_suite_tables(results: pd.DataFrame, suite: Suite, output: Path) -> tuple[dict[str, pd.DataFrame], list[Path]]:
    """Per metric: model x task table in percent with a mean column, as .md, .csv and .png; plus suite.md."""
    from .report import markdown_table, with_mean, write_table

    output.mkdir(parents=True, exist_ok=True)
    files = []
    results.to_csv(output / "results.csv", index=False)
    files.append(output / "results.csv")
    models = [m.name for m in suite.models]
    tasks = [t.name for t in suite.tasks]
    tables = {}
    sections = [f"# Suite {suite.name}\n", suite.description.strip() + "\n" if suite.description else ""]
    sections.append(markdown_table(pd.DataFrame(
        {"model": models, "spec": [m.model for m in suite.models],
         "loaded": [_first(results, m, "model_label") for m in models]}).set_index("model")))
    for metric in metric_names(suite):
        chosen = results[results["metric"] == metric]
        table = chosen.pivot_table(index="model", columns="task", values="value", aggfunc="first")
        table = (table.reindex(index=models, columns=tasks) * 100.0).astype(float)
        table = with_mean(table)
        table.index.name = "model"
        tables[metric] = table
        files += write_table(table, output / metric, metric_title(metric))
        sections.append(f"\n## {metric_title(metric)}\n\n{markdown_table(table)}\n![{metric}]({metric}.png)\n")
    errors = results[results["metric"] == "error"]
    if len(errors):
        sections.append("\n## Failures\n\n" + markdown_table(errors[["model", "task", "error"]], index=False))
    (output / "suite.md").write_text("\n".join(s for s in sections if s))
    files.append(output / "suite.md")
    return tables, files


def _first(results: pd.DataFrame, model: str, column: str) -> str:
    values = results.loc[(results["model"] == model) & results[column].notna(), column]
    return str(values.iloc[0]) if len(values) else ""
