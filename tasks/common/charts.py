"""Small charts for reports, as PNG bytes and ``data:`` URIs (so one file carries its pictures).

A PNG inside a ``data:`` URI is what both places show: the HTML run report opened from storage (no
server to fetch a separate file from) and Prefect's markdown artifacts (the UI renders
``![alt](data:image/png;base64,...)``; it strips inline SVG). matplotlib is imported when a chart is
drawn, with the non-interactive Agg backend, so importing this module costs nothing.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from lstm_model.evaluation import Metrics


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed, safe in worker threads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; the figure is closed (pyplot keeps every open figure otherwise)."""
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi)
    pyplot().close(fig)
    return out.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def grouped_bars_png(
    categories: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str, ylabel: str
) -> bytes:
    """One group of bars per category, one bar per series (``None``: no bar); values in percent."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(categories))
    for i, (name, values) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=name)
        ax.bar_label(bars, fmt="%.0f%%", fontsize=7, padding=1)
    ax.set_xticks(x, categories)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    # Beside the plot: with even classes the bars fill the frame and any inside spot covers some.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)
    fig.tight_layout()
    return figure_png(fig)


def histogram_png(counts: Sequence[int], edges: Sequence[float], title: str, xlabel: str) -> bytes:
    """A histogram from counts already binned (so a large run is binned file by file)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    left = np.asarray(edges[:-1])
    bars = ax.bar(left, counts, width=np.diff(edges), align="edge", edgecolor="white")
    # the count on each non-empty bar: a few doubtful rows next to a tall bar would not show otherwise
    ax.bar_label(bars, labels=[f"{c:,}" if c else "" for c in counts], fontsize=7, padding=1)
    ax.margins(y=0.12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def confusion_png(metrics: Metrics, title: str) -> bytes:
    """The confusion matrix as a heat map with the counts written in (rows: true class)."""
    plt = pyplot()
    matrix = np.asarray(metrics.confusion)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(metrics.labels))
    ax.set_xticks(ticks, metrics.labels, rotation=30, ha="right")
    ax.set_yticks(ticks, metrics.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(
            col, row, str(value), ha="center", va="center", color="white" if value > threshold else "black"
        )
    fig.tight_layout()
    return figure_png(fig)
