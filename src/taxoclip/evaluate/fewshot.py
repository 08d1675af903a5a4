"""Few-shot classification on frozen image features: CL2N nearest centroid and a linear probe.

Protocol (BIOCLIP.md section 5): for each class draw k support images; every other image of
that class is a query. CL2N centres all features by the mean of the support features,
L2-normalises them, and gives each query the class of the nearest (Euclidean) centroid, a
centroid being the mean of a class's normalised supports. 5 seeded trials; mean and standard
deviation (numpy's, ddof=0) over trials. Classes with fewer than k+1 images cannot be split
and are left out at that k (the supports file lists them).

The supports are written to a file (JSON, or CSV `k,trial,class,filepath`) that `read_supports`
reads back, so that anyone can rerun exactly the same trials.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import TaxoclipError
from .features import FeatureSet, task_features
from .tasks import Task

SUPPORTS_FORMAT = "taxoclip-fewshot-supports"
SUPPORTS_VERSION = 1
METHODS: tuple[str, ...] = ("cl2n", "linear_probe")


@dataclass
class Trial:
    """The support images of one trial: class name -> filepaths (as in the task's metadata)."""

    k: int
    trial: int
    supports: dict[str, list[str]]


@dataclass
class Supports:
    """All trials of a few-shot evaluation, and the classes too small for each k."""

    task: str
    seed: int
    trials: list[Trial]
    left_out: dict[int, list[str]] = field(default_factory=dict)

    @property
    def shots(self) -> list[int]:
        return sorted({t.k for t in self.trials})


def draw_supports(task: Task, shots: tuple[int, ...] = (1, 5), trials: int = 5, seed: int = 0,
                  usable: np.ndarray | None = None) -> Supports:
    """k support images per class and trial, drawn with `numpy.random.default_rng([seed, k, trial])`.

    `usable` masks images that may be drawn (e.g. those whose features could be computed).
    """
    labels = task.labels
    usable = np.ones(len(labels), dtype=bool) if usable is None else usable
    members = [np.flatnonzero((labels == c) & usable) for c in range(task.n_classes)]
    filepaths = np.array(task.filepaths, dtype=object)
    out, left_out = [], {}
    for k in shots:
        left_out[k] = [task.class_names[c] for c, rows in enumerate(members) if len(rows) < k + 1]
        for t in range(trials):
            rng = np.random.default_rng([seed, k, t])
            chosen = {task.class_names[c]: filepaths[np.sort(rng.choice(rows, size=k, replace=False))].tolist()
                      for c, rows in enumerate(members) if len(rows) >= k + 1}
            out.append(Trial(k, t, chosen))
    return Supports(task.name, seed, out, left_out)


def write_supports(supports: Supports, path: str | os.PathLike) -> Path:
    """Save supports as JSON (default) or, for a `.csv` path, as rows k,trial,class,filepath."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        rows = [{"k": t.k, "trial": t.trial, "class": c, "filepath": f}
                for t in supports.trials for c, files in t.supports.items() for f in files]
        pd.DataFrame(rows, columns=["k", "trial", "class", "filepath"]).to_csv(path, index=False)
        return path
    document = {"format": SUPPORTS_FORMAT, "version": SUPPORTS_VERSION, "task": supports.task,
                "seed": supports.seed, "left_out": {str(k): v for k, v in supports.left_out.items()},
                "trials": [{"k": t.k, "trial": t.trial, "supports": t.supports} for t in supports.trials]}
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False))
    return path


def read_supports(path: str | os.PathLike) -> Supports:
    """Read a file written by `write_supports` (JSON or CSV)."""
    path = Path(path)
    if not path.is_file():
        raise TaxoclipError(f"supports file not found: {path}")
    try:
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path, dtype={"class": str, "filepath": str})
            trials = [Trial(int(k), int(t), {c: g["filepath"].tolist() for c, g in group.groupby("class", sort=False)})
                      for (k, t), group in table.groupby(["k", "trial"], sort=True)]
            return Supports(path.stem, -1, trials)
        document = json.loads(path.read_text())
    except (OSError, ValueError, KeyError) as err:
        raise TaxoclipError(f"cannot read supports file {path}: {err}") from None
    if document.get("format") != SUPPORTS_FORMAT:
        raise TaxoclipError(f"{path} is not a taxoclip few-shot supports file")
    trials = [Trial(int(t["k"]), int(t["trial"]), {c: list(f) for c, f in t["supports"].items()})
              for t in document["trials"]]
    left_out = {int(k): list(v) for k, v in document.get("left_out", {}).items()}
    return Supports(document.get("task", ""), int(document.get("seed", -1)), trials, left_out)


def cl2n_predict(support: np.ndarray, support_labels: np.ndarray, query: np.ndarray) -> np.ndarray:
    """CL2N nearest centroid (SimpleShot): centre by the support mean, L2-normalise, nearest class mean.

    Returns the predicted label (a value of `support_labels`) of each query row.
    """
    support = np.asarray(support, dtype=np.float64)
    query = np.asarray(query, dtype=np.float64)
    mean = support.mean(axis=0, keepdims=True)

    def centred_unit(x: np.ndarray) -> np.ndarray:
        x = x - mean
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    support, query = centred_unit(support), centred_unit(query)
    classes = np.unique(support_labels)
    centroids = np.stack([support[support_labels == c].mean(axis=0) for c in classes])
    distances = (query ** 2).sum(1)[:, None] - 2 * query @ centroids.T + (centroids ** 2).sum(1)[None, :]
    return classes[np.argmin(distances, axis=1)]


def linear_probe_predict(support: np.ndarray, support_labels: np.ndarray, query: np.ndarray,
                         c: float = 1.0, max_iter: int = 1000) -> np.ndarray:
    """Multinomial logistic regression (scikit-learn, lbfgs) on the normalised features."""
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(support_labels)
    if len(classes) < 2:
        return np.full(len(query), classes[0])
    model = LogisticRegression(C=c, max_iter=max_iter)
    with warnings.catch_warnings():  # one or few samples per class is the point of few-shot
        warnings.simplefilter("ignore", UserWarning)
        model.fit(np.asarray(support, dtype=np.float64), support_labels)
    return model.predict(np.asarray(query, dtype=np.float64))


@dataclass
class FewShotResult:
    """Per-trial accuracies and their summary (mean, std over trials) per method and k."""

    task: str
    model: str
    trials: pd.DataFrame  # method, k, trial, classes, queries, accuracy
    supports: Supports
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> pd.DataFrame:
        """method, k, mean, std, trials, classes."""
        grouped = self.trials.groupby(["method", "k"], sort=False)
        out = grouped["accuracy"].agg(mean="mean", std=lambda a: float(np.std(a)), trials="size").reset_index()
        out["classes"] = grouped["classes"].first().to_numpy()
        return out

    def accuracy(self, k: int, method: str = "cl2n") -> float:
        rows = self.summary
        match = rows[(rows["k"] == k) & (rows["method"] == method)]
        return float(match["mean"].iloc[0]) if len(match) else float("nan")


def evaluate_supports(features: np.ndarray, task: Task, supports: Supports, methods: tuple[str, ...] = METHODS,
                      usable: np.ndarray | None = None, probe_c: float = 1.0) -> pd.DataFrame:
    """Run every trial of `supports` on precomputed features; one row per (method, trial)."""
    labels = task.labels
    usable = np.ones(len(labels), dtype=bool) if usable is None else usable
    row_of = {f: i for i, f in enumerate(task.filepaths)}
    class_of = {name: c for c, name in enumerate(task.class_names)}
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise TaxoclipError(f"unknown few-shot method {unknown[0]!r}; expected {', '.join(METHODS)}")
    rows = []
    for trial in supports.trials:
        support_rows, classes = [], []
        for name, files in trial.supports.items():
            if name not in class_of:
                raise TaxoclipError(f"supports name class {name!r}, which task {task.name!r} does not have")
            missing = [f for f in files if f not in row_of]
            if missing:
                raise TaxoclipError(f"supports name {missing[0]!r}, which is not an image of task {task.name!r}")
            kept = [row_of[f] for f in files if usable[row_of[f]]]  # a support that failed to load is dropped
            if kept:
                support_rows += kept
                classes.append(class_of[name])
        support_rows = np.array(support_rows, dtype=np.int64)
        in_trial = np.isin(labels, classes) & usable
        in_trial[support_rows] = False
        query_rows = np.flatnonzero(in_trial)
        if not len(query_rows):
            continue
        for method in methods:
            predict = cl2n_predict if method == "cl2n" else (
                lambda s, y, q: linear_probe_predict(s, y, q, c=probe_c))
            guess = predict(features[support_rows], labels[support_rows], features[query_rows])
            rows.append({"method": method, "k": trial.k, "trial": trial.trial, "classes": len(classes),
                         "queries": len(query_rows), "accuracy": float((guess == labels[query_rows]).mean())})
    return pd.DataFrame(rows, columns=["method", "k", "trial", "classes", "queries", "accuracy"])


def few_shot(loaded: Any, task: Task, shots: tuple[int, ...] = (1, 5), trials: int = 5, seed: int = 0,
             supports: Supports | str | os.PathLike | None = None, methods: tuple[str, ...] = METHODS,
             probe_c: float = 1.0, features: FeatureSet | None = None, **feature_options: Any) -> FewShotResult:
    """Few-shot accuracy of a model's frozen image features on a task.

    With `supports` (a `Supports` or a file from `write_supports`) the trials are rerun exactly;
    otherwise they are drawn from `seed`.
    """
    features = features if features is not None else task_features(loaded, task, **feature_options)
    ok = features.ok
    if supports is None:
        supports = draw_supports(task, shots, trials, seed, usable=ok)
    elif not isinstance(supports, Supports):
        supports = read_supports(supports)
    table = evaluate_supports(features.features, task, supports, methods, usable=ok, probe_c=probe_c)
    failed = {task.filepaths[i]: message for i, message in features.errors.items()}
    return FewShotResult(task.name, loaded.identity.label, table, supports, failed)
