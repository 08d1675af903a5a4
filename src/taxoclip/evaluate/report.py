"""Writing result tables (Markdown + CSV) and bar charts (PNG) for suites and ablations."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def _cell(value: object, digits: int) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(table: pd.DataFrame, digits: int = 1, index: bool = True) -> str:
    """A GitHub Markdown table; floats with `digits` decimals, NaN as a dash."""
    frame = table.reset_index() if index else table
    header = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, digits) for v in row) + " |")
    return "\n".join(lines) + "\n"


def with_mean(table: pd.DataFrame, column: str = "mean") -> pd.DataFrame:
    """The table with a last column holding each row's mean (NaN when any value is missing)."""
    out = table.copy()
    out[column] = table.mean(axis=1, skipna=False) if table.shape[1] else float("nan")
    return out


def bar_chart(table: pd.DataFrame, path: str | Path, title: str, ylabel: str) -> Path:
    """Grouped bars: one group per column, one bar per row (model), saved as a PNG."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    columns, rows = list(table.columns), list(table.index)
    width = 0.8 / max(1, len(rows))
    figure = Figure(figsize=(max(5.0, 1.1 * len(columns) * max(1, len(rows)) ** 0.5 + 2), 3.6))
    ax = figure.subplots()
    positions = np.arange(len(columns))
    for i, row in enumerate(rows):
        values = table.loc[row].to_numpy(dtype=float)
        ax.bar(positions + (i - (len(rows) - 1) / 2) * width, np.nan_to_num(values), width, label=str(row))
    ax.set_xticks(positions)
    ax.set_xticklabels([str(c) for c in columns], rotation=30 if len(columns) > 5 else 0, ha="right" if len(columns) > 5 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if rows:
        ax.legend(fontsize=7, frameon=False)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    return path


def write_table(table: pd.DataFrame, stem: str | Path, title: str, ylabel: str = "top-1 accuracy (%)",
                chart: bool = True, digits: int = 1, note: str = "") -> list[Path]:
    """`stem.md`, `stem.csv` and (with `chart`) `stem.png` for a model x column table of percentages."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    md = stem.with_suffix(".md")
    md.write_text(f"### {title}\n\n{markdown_table(table, digits)}" + (f"\n{note}\n" if note else ""))
    written.append(md)
    csv = stem.with_suffix(".csv")
    table.round(4).to_csv(csv)
    written.append(csv)
    if chart:
        written.append(bar_chart(table, stem.with_suffix(".png"), title, ylabel))
    return written
