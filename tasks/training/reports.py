"""Reports for people: Parquet tables, the learning-curve plot, Prefect artifacts."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from lstm_model.evaluation import Metrics
from lstm_model.training import EpochMetrics
from tasks.common.charts import confusion_png
from tasks.common.charts import data_uri
from tasks.common.charts import figure_png
from tasks.common.charts import pyplot


def report_table(frame: pd.DataFrame) -> pa.Table:
    """Arrow table of a report frame; a column whose values mix types (the reason a row was
    rejected, often) is written as text, nulls kept, instead of failing the write."""
    columns = {}
    for name in frame.columns:
        try:
            columns[str(name)] = pa.array(frame[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[str(name)] = pa.array([None if _is_null(v) else str(v) for v in frame[name]], pa.string())
    return pa.table(columns)


def _is_null(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists and dicts
        return False


def parquet_bytes(table: pa.Table | pd.DataFrame) -> bytes:
    if isinstance(table, pd.DataFrame):
        table = report_table(table)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def learning_curve_figure(history: Sequence[EpochMetrics], best_epoch: int):
    """Loss (left) and validation accuracy / macro-F1 (right) per epoch, the best epoch marked.

    The x axis shows whole epochs only: a value is measured once per epoch, and matplotlib's default
    ticks for a short run (1, 1.25, 1.5, ...) read as if there were points between epochs.
    """
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [h.epoch for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [h.train_loss for h in history], marker="o", label="train loss")
    left.plot(epochs, [h.val_loss for h in history], marker="o", label="validation loss")
    left.set_yscale("symlog", linthresh=1e-3)
    left.legend()
    right.plot(epochs, [h.val_accuracy for h in history], marker="o", label="validation accuracy")
    right.plot(epochs, [h.val_macro_f1 for h in history], marker="o", label="validation macro-F1")
    right.legend()
    for ax in (left, right):
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel("epoch")
        if epochs:  # one epoch alone: show it as a tick, not a span of fractions around it
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Learning curve (best epoch {best_epoch}, restored; validation texts have their template words masked)"
    )
    fig.tight_layout()
    return fig


def learning_curve_png(history: Sequence[EpochMetrics], best_epoch: int) -> bytes:
    """:func:`learning_curve_figure` as PNG bytes (``learning_curve.png`` of a model version)."""
    return figure_png(learning_curve_figure(history, best_epoch))


def metrics_rows(metrics: dict[str, Metrics]) -> list[dict]:
    """One row per (dataset, class) plus an overall row per dataset: the metrics table artifact."""
    rows = []
    for name, m in metrics.items():
        rows.append(
            {
                "dataset": name,
                "class": "(all)",
                "precision": None,
                "recall": None,
                "f1": round(m.macro_f1, 4),
                "accuracy": round(m.accuracy, 4),
                "support": sum(c.support for c in m.per_class),
            }
        )
        for c in m.per_class:
            rows.append(
                {
                    "dataset": name,
                    "class": c.label,
                    "precision": round(c.precision, 4),
                    "recall": round(c.recall, 4),
                    "f1": round(c.f1, 4),
                    "accuracy": None,
                    "support": c.support,
                }
            )
    return rows


def confusion_markdown(m: Metrics, title: str) -> str:
    header = "| true \\ predicted | " + " | ".join(m.labels) + " |"
    rule = "|---" * (len(m.labels) + 1) + "|"
    body = [
        f"| **{label}** | " + " | ".join(str(v) for v in row) + " |"
        for label, row in zip(m.labels, m.confusion, strict=True)
    ]
    return "\n".join([f"### {title}", "", header, rule, *body, ""])


def confusion_section(m: Metrics, title: str) -> str:
    """A confusion matrix as a picture (what a person reads first) above the same counts as a table."""
    image = f"![confusion matrix: {title}]({data_uri(confusion_png(m, title))})"
    return "\n".join([image, "", confusion_markdown(m, title)])


@task(name="publish-training-artifacts", cache_policy=NO_CACHE)
def publish_training_artifacts(
    version: str, metrics: dict[str, Metrics], promoted: bool, device: str, learning_curve: bytes
) -> None:
    """The metrics table, the confusion matrices and the learning curve, as artifacts of the run.

    The pictures are PNGs inside the markdown (``data:`` URIs, which the Prefect UI shows), so they are
    in the UI next to the run, not only in storage.
    """
    create_table_artifact(
        key="train-metrics",
        table=metrics_rows(metrics),
        description=f"Model {version} (trained on {device}); promoted to latest: {promoted}",
    )
    create_markdown_artifact(
        key="train-confusion-matrix",
        markdown="\n".join(confusion_section(m, f"{name} ({version})") for name, m in metrics.items()),
        description=f"Confusion matrices of model {version}",
    )
    create_markdown_artifact(
        key="train-learning-curve",
        markdown=f"### Learning curve ({version})\n\n![learning curve of {version}]({data_uri(learning_curve)})\n",
        description=f"Loss, accuracy and macro-F1 per epoch of model {version}",
    )
    get_run_logger().info("Published metrics, confusion-matrix and learning-curve artifacts for %s", version)
