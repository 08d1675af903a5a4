"""How well an image-embedding space follows the tree of life.

(a) The paper's figure: t-SNE of the image embeddings coloured by kingdom, then of the largest
kingdom's images coloured by phylum, then of the largest phylum's coloured by class, and so on
down to species, one panel per rank.

(b) taxoclip's addition (the paper published no number): for each rank, the k-nearest-neighbour
label agreement (the share of an image's k most similar other images, by cosine, that belong to
its taxon at that rank; chance level given beside it) and the silhouette score (cosine) of the
images grouped by their taxon at that rank. Both let two models be compared on one image set.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..taxonomy.taxon import RANKS, Taxon
from .features import FeatureSet, task_features
from .tasks import Task, rank_keys


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_agreement(features: np.ndarray, labels: np.ndarray, k: int = 10, block: int = 1024) -> tuple[float, float]:
    """(agreement, chance): mean share of each item's k cosine-nearest others with its label.

    Chance is the same share for neighbours drawn at random: mean of (n_label - 1) / (n - 1).
    """
    x = _unit(features)
    labels = np.asarray(labels)
    n = len(x)
    if n < 2:
        return float("nan"), float("nan")
    k = min(k, n - 1)
    _, codes = np.unique(labels, return_inverse=True)
    shares = np.empty(n)
    for start in range(0, n, block):
        sims = x[start:start + block] @ x.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # never one's own neighbour
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        shares[start:start + block] = (codes[nearest] == codes[start:start + block, None]).mean(axis=1)
    sizes = np.bincount(codes)
    chance = float(((sizes[codes] - 1) / (n - 1)).mean())
    return float(shares.mean()), chance


def silhouette(features: np.ndarray, labels: np.ndarray, sample: int = 5000, seed: int = 0) -> float:
    """Mean silhouette (cosine distance) of items grouped by label; NaN with one group or all singletons."""
    from sklearn.metrics import silhouette_score

    groups = len(np.unique(labels))
    if groups < 2 or groups > len(labels) - 1:
        return float("nan")
    size = min(sample, len(labels)) if sample else None
    if size is not None and size >= len(labels):
        size = None
    try:
        return float(silhouette_score(_unit(features), labels, metric="cosine", sample_size=size, random_state=seed))
    except ValueError:  # a sample that happened to hold a single group
        return float("nan")


def hierarchy_scores(features: np.ndarray, taxa: list[Taxon | None], k: int = 10, ranks: tuple[str, ...] = RANKS,
                     max_images: int = 20000, silhouette_sample: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Per rank: images, groups, knn_agreement, knn_chance, silhouette (images with a value at that rank)."""
    features = np.asarray(features)
    rng = np.random.default_rng(seed)
    rows = []
    for rank in ranks:
        keys = rank_keys(taxa, rank)
        known = np.flatnonzero(keys != "")
        if len(known) < 2:
            continue
        if len(known) > max_images:
            known = np.sort(rng.choice(known, max_images, replace=False))
        labels = keys[known].astype(str)
        agreement, chance = knn_agreement(features[known], labels, k)
        rows.append({"rank": rank, "images": len(known), "groups": len(np.unique(labels)),
                     "knn_agreement": agreement, "knn_chance": chance,
                     "silhouette": silhouette(features[known], labels, silhouette_sample, seed)})
    return pd.DataFrame(rows, columns=["rank", "images", "groups", "knn_agreement", "knn_chance", "silhouette"])


@dataclass
class Panel:
    """One panel of the drill-down: the images within `within`, coloured by their taxon at `rank`."""

    rank: str
    within: str  # "all images" or the parent taxon's name
    rows: np.ndarray
    labels: np.ndarray  # display name at `rank` per row


def drilldown_panels(taxa: list[Taxon | None], ranks: tuple[str, ...] = RANKS, min_images: int = 10) -> list[Panel]:
    """Kingdom over all images, then each next rank within the largest group of the one before."""
    rows = np.arange(len(taxa))
    within = "all images"
    panels = []
    for rank in ranks:
        keys = rank_keys([taxa[i] for i in rows], rank)
        rows, keys = rows[keys != ""], keys[keys != ""]
        if len(rows) < min_images:
            break
        names = np.array([taxa[i].get(rank) for i in rows], dtype=object)
        panels.append(Panel(rank, within, rows, names))
        biggest = Counter(keys).most_common(1)[0][0]
        within = names[keys == biggest][0]
        rows = rows[keys == biggest]
    return panels


def drilldown_figure(features: np.ndarray, taxa: list[Taxon | None], path: str | Path, title: str = "",
                     max_points: int = 3000, top_groups: int = 10, seed: int = 0, min_images: int = 10,
                     tsne_iterations: int = 1000) -> list[Panel]:
    """Draw the t-SNE drill-down (one panel per rank) to a PNG; returns the panels drawn."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
    from sklearn.manifold import TSNE

    panels = drilldown_panels(taxa, min_images=min_images)
    columns = min(4, max(1, len(panels)))
    lines = max(1, -(-len(panels) // columns))
    figure = Figure(figsize=(4.2 * columns, 4.0 * lines))
    axes = figure.subplots(lines, columns, squeeze=False)
    rng = np.random.default_rng(seed)
    palette = matplotlib.colormaps["tab10"]
    for ax, panel in zip(axes.flat, panels):
        chosen = np.arange(len(panel.rows))
        if len(chosen) > max_points:
            chosen = np.sort(rng.choice(chosen, max_points, replace=False))
        x = _unit(np.asarray(features)[panel.rows[chosen]])
        labels = panel.labels[chosen]
        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, metric="cosine",
                  max_iter=max(250, tsne_iterations)).fit_transform(x)
        counts = Counter(labels)
        shown = [name for name, _ in counts.most_common(top_groups)]
        rest = ~np.isin(labels, shown)
        if rest.any():
            ax.scatter(xy[rest, 0], xy[rest, 1], s=5, c="lightgrey", label=f"{len(counts) - len(shown)} others")
        for i, name in enumerate(shown):
            mask = labels == name
            ax.scatter(xy[mask, 0], xy[mask, 1], s=6, color=palette(i % 10), label=f"{name} ({counts[name]})")
        ax.set_title(f"{panel.rank} within {panel.within}\n{len(panel.rows)} images, {len(counts)} taxa", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6, markerscale=1.5, loc="best", frameon=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=64)
    return panels


@dataclass
class HierarchyResult:
    """Per-rank scores of one model on one image set, and the figure if drawn."""

    task: str
    model: str
    scores: pd.DataFrame
    figure: Path | None = None
    failed: dict[str, str] = field(default_factory=dict)


def image_taxa(task: Task) -> list[Taxon | None]:
    """The lineage of every image of a task (its class's)."""
    return [task.class_taxa[label] for label in task.labels]


def hierarchy(loaded: Any, task: Task, figure: str | Path | None = None, k: int = 10, seed: int = 0,
              max_points: int = 3000, tsne_iterations: int = 1000, title: str | None = None,
              features: FeatureSet | None = None, **feature_options: Any) -> HierarchyResult:
    """Hierarchy scores (and optionally the drill-down PNG) of a model's image embeddings of a task."""
    if not task.known_ranks():
        from .tasks import resolve_task_taxa

        resolve_task_taxa(task)
    features = features if features is not None else task_features(loaded, task, **feature_options)
    ok = np.flatnonzero(features.ok)
    every = image_taxa(task)
    taxa = [every[i] for i in ok]
    scores = hierarchy_scores(features.features[ok], taxa, k=k, seed=seed)
    drawn = None
    if figure is not None:
        drilldown_figure(features.features[ok], taxa, figure, title=title or f"{loaded.identity.label} on {task.name}",
                         max_points=max_points, seed=seed, tsne_iterations=tsne_iterations)
        drawn = Path(figure)
    failed = {task.filepaths[i]: message for i, message in features.errors.items()}
    return HierarchyResult(task.name, loaded.identity.label, scores, drawn, failed)
