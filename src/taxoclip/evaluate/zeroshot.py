"""Zero-shot classification of a task: top-1/top-5, per-class and per-rank accuracy.

Class vectors follow BioCLIP's protocol: each class text through the 81 templates, the
normalised embeddings averaged and renormalised; an image's class is the one of highest cosine
similarity. A prediction is right at a rank (say family) when the predicted class's family
equals the true class's family; images whose true class has no value at a rank are left out
of that rank's count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..taxonomy.taxon import RANKS, Taxon
from .features import FeatureSet, task_features, text_features
from .tasks import Task, label_texts, rank_keys


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per row, whether the true label is among the k highest scores (ties broken by index)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=1)


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """One row per class: images, correct (top-1), accuracy."""
    frame = pd.DataFrame({"label": labels, "correct": predicted == labels})
    grouped = frame.groupby("label")["correct"].agg(["size", "sum"])
    grouped = grouped.reindex(range(len(class_names)), fill_value=0)
    out = pd.DataFrame({"class": class_names, "images": grouped["size"].to_numpy(),
                        "correct": grouped["sum"].to_numpy().astype(int)})
    with np.errstate(invalid="ignore", divide="ignore"):
        out["accuracy"] = out["correct"] / out["images"].where(out["images"] > 0)
    return out


def per_rank_accuracy(predicted: np.ndarray, labels: np.ndarray, class_taxa: list[Taxon | None],
                      ranks: tuple[str, ...] = RANKS) -> pd.DataFrame:
    """Top-1 accuracy at each rank where the true classes have values: rank, images, correct, accuracy.

    Lineages are compared from the kingdom down, so a genus homonym in another kingdom is wrong.
    """
    rows = []
    for rank in ranks:
        values = rank_keys(class_taxa, rank)
        truth, guess = values[labels], values[predicted]
        known = truth != ""
        if not known.any():
            continue
        correct = int((truth[known] == guess[known]).sum())
        rows.append({"rank": rank, "images": int(known.sum()), "correct": correct,
                     "accuracy": correct / int(known.sum())})
    return pd.DataFrame(rows, columns=["rank", "images", "correct", "accuracy"])


@dataclass
class ZeroShotResult:
    """Metrics of one model on one task with one text type."""

    task: str
    model: str
    text_type: str
    top1: float
    top5: float
    mean_per_class: float
    images: int
    classes: int
    per_class: pd.DataFrame
    per_rank: pd.DataFrame
    predictions: pd.DataFrame
    unresolved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # filepath -> error

    def summary(self) -> dict[str, Any]:
        out = {"task": self.task, "model": self.model, "text_type": self.text_type, "top1": self.top1,
               "top5": self.top5, "mean_per_class": self.mean_per_class, "images": self.images,
               "classes": self.classes, "unresolved": len(self.unresolved), "failed": len(self.failed)}
        out.update({f"top1_{r}": a for r, a in zip(self.per_rank["rank"], self.per_rank["accuracy"])})
        return out


def score_zero_shot(image_features: np.ndarray, class_vectors: np.ndarray, labels: np.ndarray,
                    class_names: list[str], class_taxa: list[Taxon | None]) -> dict[str, Any]:
    """Metrics from features alone: cosine scores, top-1/top-5, per-class and per-rank tables."""
    scores = image_features.astype(np.float64) @ class_vectors.astype(np.float64).T
    predicted = np.argsort(-scores, axis=1, kind="stable")[:, 0]
    per_class = per_class_accuracy(predicted, labels, class_names)
    return {
        "scores": scores, "predicted": predicted,
        "top1": float(topk_correct(scores, labels, 1).mean()) if len(labels) else float("nan"),
        "top5": float(topk_correct(scores, labels, 5).mean()) if len(labels) else float("nan"),
        "mean_per_class": float(per_class["accuracy"].mean()),
        "per_class": per_class,
        "per_rank": per_rank_accuracy(predicted, labels, class_taxa),
    }


def zero_shot(loaded: Any, task: Task, text_type: str | None = None, templates: str = "bioclip",
              features: FeatureSet | None = None, **feature_options: Any) -> ZeroShotResult:
    """Zero-shot accuracy of a loaded model on a task with a text type (default: the task's)."""
    texts = label_texts(task, text_type or task.spec.text)
    features = features if features is not None else task_features(loaded, task, **feature_options)
    ok = features.ok
    labels = task.labels[ok]
    vectors = text_features(loaded, texts.texts, templates, progress=feature_options.get("progress", True))
    metrics = score_zero_shot(features.features[ok], vectors, labels, task.class_names, task.class_taxa)
    top5 = np.argsort(-metrics["scores"], axis=1, kind="stable")[:, :5]
    names = np.array(task.class_names, dtype=object)
    predictions = pd.DataFrame({
        "filepath": np.array(task.filepaths, dtype=object)[ok], "true": names[labels],
        "predicted": names[metrics["predicted"]], "correct": metrics["predicted"] == labels,
        "score": metrics["scores"][np.arange(len(labels)), metrics["predicted"]],
        "top5": ["|".join(names[row]) for row in top5],
    })
    failed = {task.filepaths[i]: message for i, message in features.errors.items()}
    return ZeroShotResult(task.name, loaded.identity.label, texts.text_type, metrics["top1"], metrics["top5"],
                          metrics["mean_per_class"], int(ok.sum()), task.n_classes, metrics["per_class"],
                          metrics["per_rank"], predictions, texts.unresolved, failed)
