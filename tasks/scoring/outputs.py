"""The analyst-facing Parquet tables of the scoring flow: their Arrow schemas and the rows they hold.

Every table is a hive-partitioned dataset under the storage root, partitioned by ``scored_date``
(UTC day of the run), so ``pandas.read_parquet(<root>/predictions)``, DuckDB's
``read_parquet('<root>/predictions/**/*.parquet', hive_partitioning=true)`` and Spark's
``spark.read.parquet`` all read one table. Each file is written with the table's explicit schema,
so a column that a batch lacks is a null column, never a missing one.

Where the parts live and how they are named, written and listed is the store's
(:mod:`tasks.store.tables`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.scoring.discovery import BatchFile

if TYPE_CHECKING:
    from lstm_model.predict import TextScores


UTC_TS = pa.timestamp("us", tz="UTC")

# Input columns the dataset defines, with the types predictions/ stores them as. Any other input
# column is kept too, in ``extra_columns`` as a JSON object, so the schema never changes with input.
PASSTHROUGH = pa.schema(
    [
        ("id", pa.string()),
        ("timestamp", UTC_TS),
        ("pais", pa.string()),
        ("ciudad", pa.string()),
        ("canal", pa.string()),
        ("plataforma", pa.string()),
        ("medio_contacto", pa.string()),
        ("comentario", pa.string()),
        ("categoria", pa.string()),
        ("severidad", pa.string()),
        ("sentimiento", pa.float64()),
        ("extra_columns", pa.string()),
    ]
)

BATCH_FIELDS = [
    ("batch", pa.string()),  # the source file's name
    ("batch_key", pa.string()),  # SHA-256 of its content: the exactly-once key
    ("row_number", pa.int64()),  # position of the row in the source file
]


def probability_fields(labels: Sequence[str]) -> list[tuple[str, pa.DataType]]:
    return [
        ("categoria_pred", pa.string()),  # null when the comment has no readable word
        ("confianza", pa.float32()),
        *[(f"prob_{label}", pa.float32()) for label in labels],
    ]


def predictions_schema(labels: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [
            *PASSTHROUGH,
            ("comentario_date", pa.date32()),  # UTC day of ``timestamp`` (null without one)
            *probability_fields(labels),
            ("needs_review", pa.bool_()),
            ("review_reason", pa.string()),  # comma-separated; null when needs_review is false
            ("model_version", pa.string()),
            *BATCH_FIELDS,
            ("scored_at", UTC_TS),
        ]
    )


def review_schema(labels: Sequence[str]) -> pa.Schema:
    """``review/``: the flagged predictions, with an empty ``categoria`` for the analyst to fill in."""
    return pa.schema(
        [
            ("id", pa.string()),
            ("comentario", pa.string()),
            *probability_fields(labels),
            ("review_reason", pa.string()),
            ("model_version", pa.string()),
            *BATCH_FIELDS,
            ("scored_at", UTC_TS),
            ("categoria", pa.string()),
        ]
    )


# Rejected rows keep the original values as text: a value that broke a rule may not fit the
# predictions' types (a sentimiento of "abc", say), and it must reach the report unchanged.
REJECTED_SCHEMA = pa.schema(
    [
        *[(f.name, pa.string()) for f in PASSTHROUGH],
        *BATCH_FIELDS,
        ("rule", pa.string()),
        ("reason", pa.string()),
        ("rejected_at", UTC_TS),
    ]
)

UNREADABLE_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("batch", pa.string()),
        ("batch_key", pa.string()),
        ("size_bytes", pa.int64()),
        ("reason", pa.string()),
        ("detected_at", UTC_TS),
    ]
)

MISCLASSIFIED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("comentario", pa.string()),
        (
            "tokens",
            pa.list_(pa.string()),
        ),  # as the model saw them: cut to the vocabulary's stems, [UNK] shown
        ("categoria", pa.string()),
        ("categoria_pred", pa.string()),
        ("confianza", pa.float32()),
        ("model_version", pa.string()),
        *BATCH_FIELDS,
        ("scored_at", UTC_TS),
    ]
)

SUMMARY_SCHEMA = pa.schema(
    [
        ("batch", pa.string()),
        ("batch_key", pa.string()),
        ("model_version", pa.string()),
        ("rows_in", pa.int64()),
        ("rows_predicted", pa.int64()),
        ("rows_rejected", pa.int64()),
        ("class_counts", pa.map_(pa.string(), pa.int64())),
        ("mean_confianza", pa.float64()),
        ("unknown_token_share", pa.float64()),
        ("training_unknown_token_share", pa.float64()),
        ("labelled_rows", pa.int64()),
        ("accuracy", pa.float64()),
        ("misclassified_rows", pa.int64()),
        ("rows_flagged", pa.int64()),
        ("seconds", pa.float64()),
        ("scored_at", UTC_TS),
    ]
)


@dataclass(frozen=True)
class BatchSummary:
    """One row of ``reports/batches/``: what happened to one batch."""

    batch: str
    batch_key: str
    model_version: str
    rows_in: int
    rows_predicted: int
    rows_rejected: int
    class_counts: tuple[tuple[str, int], ...]  # (label, predicted rows), in the model's label order
    mean_confianza: float | None  # None when no row was predicted
    unknown_token_share: float | None  # None when no row had a token
    training_unknown_token_share: float | None  # the same share on the training run's validation split
    labelled_rows: int  # rows with a categoria to compare with
    accuracy: float | None  # None without labelled rows
    misclassified_rows: int
    rows_flagged: int  # predictions with needs_review
    seconds: float
    scored_at: datetime

    def to_table(self) -> pa.Table:
        row = {**asdict(self), "class_counts": list(self.class_counts)}
        return pa.Table.from_pylist([row], schema=SUMMARY_SCHEMA)


def _constant(value: object, n: int, kind: pa.DataType) -> pa.Array:
    return pa.repeat(pa.scalar(value, kind), n)


def predictions_table(
    valid: pa.Table, scores: TextScores, labels: Sequence[str], version: str, batch: BatchFile, when: datetime
) -> pa.Table:
    """``predictions/`` rows for the valid rows of a chunk, from their scores."""
    n = valid.num_rows
    probs = scores.probs.reshape(n, len(labels))
    predicted = scores.predicted
    names = np.asarray(labels, dtype=object)[np.maximum(predicted, 0)]
    columns = {name: valid[name] for name in valid.column_names if name != "row_number"}
    # The day the comment was written, for "how many per category yesterday" by comment date
    # (``scored_date`` is the day of the run). ``timestamp`` is UTC, so this is its UTC day.
    columns["comentario_date"] = pc.cast(valid["timestamp"], pa.date32())
    columns["categoria_pred"] = pa.array(names, pa.string(), mask=predicted < 0)
    columns["confianza"] = pa.array(probs.max(axis=1, initial=0.0), pa.float32())
    for i, label in enumerate(labels):
        columns[f"prob_{label}"] = pa.array(probs[:, i], pa.float32())
    columns["needs_review"] = pa.array(scores.needs_review, pa.bool_())
    columns["review_reason"] = scores.review_reason
    columns["model_version"] = _constant(version, n, pa.string())
    columns["batch"] = _constant(batch.name, n, pa.string())
    columns["batch_key"] = _constant(batch.key, n, pa.string())
    columns["row_number"] = valid["row_number"]
    columns["scored_at"] = _constant(when, n, UTC_TS)
    return pa.table(columns, schema=predictions_schema(labels))


def review_table(preds: pa.Table, labels: Sequence[str]) -> pa.Table:
    """``review/`` rows: the chunk's predictions with ``needs_review``, ready for an analyst's label."""
    flagged = preds.filter(pc.fill_null(preds["needs_review"], False))
    schema = review_schema(labels)
    columns = {name: flagged[name] for name in schema.names if name != "categoria"}
    columns["categoria"] = pa.nulls(flagged.num_rows, pa.string())
    return pa.table(columns, schema=schema)


def misclassified_table(
    valid: pa.Table, preds: pa.Table, seen_tokens: Callable[[pa.Array], list[list[str]]]
) -> pa.Table:
    """``errors/misclassified/`` rows: labelled rows whose prediction differs from ``categoria``.

    ``seen_tokens`` turns comments into the tokens as the model saw them (stems, ``[UNK]``).
    """
    truth = valid["categoria"]
    # A row given no class (no readable word) is not right either.
    differs = pc.fill_null(pc.not_equal(truth, preds["categoria_pred"]), True)
    wrong = pc.fill_null(pc.and_(pc.is_valid(truth), differs), False)
    take = pa.array(np.flatnonzero(wrong.to_numpy(zero_copy_only=False)), pa.int64())
    comments = valid["comentario"].take(take)
    return pa.table(
        {
            "id": valid["id"].take(take),
            "comentario": comments,
            "tokens": pa.array(seen_tokens(comments) if len(take) else [], pa.list_(pa.string())),
            "categoria": truth.take(take),
            **{
                name: preds[name].take(take)
                for name in ("categoria_pred", "confianza", "model_version", "batch", "batch_key")
            },
            "row_number": valid["row_number"].take(take),
            "scored_at": preds["scored_at"].take(take),
        },
        schema=MISCLASSIFIED_SCHEMA,
    )


def rejected_table(rejected: pa.Table, batch: BatchFile, when: datetime) -> pa.Table:
    """``errors/rejected/`` rows: a chunk's rejected rows with the batch they came from."""
    n = rejected.num_rows
    columns = {name: rejected[name] for name in rejected.column_names}
    columns["batch"] = _constant(batch.name, n, pa.string())
    columns["batch_key"] = _constant(batch.key, n, pa.string())
    columns["rejected_at"] = _constant(when, n, UTC_TS)
    return pa.table({name: columns[name] for name in REJECTED_SCHEMA.names}, schema=REJECTED_SCHEMA)


def unreadable_table(batch: BatchFile, reason: str, when: datetime) -> pa.Table:
    """The one ``errors/unreadable/`` row of a file that could not be read as a batch."""
    row = {
        "path": batch.uri,
        "batch": batch.name,
        "batch_key": batch.key,
        "size_bytes": batch.size,
        "reason": reason,
        "detected_at": when,
    }
    return pa.Table.from_pylist([row], schema=UNREADABLE_SCHEMA)


def confidence_edges(num_classes: int, step: float = 0.05) -> np.ndarray:
    """Bins of the run report's confidence histogram: from the lowest possible top probability
    (1/classes, rounded down to ``step``) to 1."""
    low = math.floor((1 / max(num_classes, 1)) / step) * step
    return np.round(np.arange(low, 1.0 + step / 2, step), 4)


def confidence_counts(confianza: pa.Array | pa.ChunkedArray, edges: np.ndarray) -> np.ndarray:
    """How many of these ``confianza`` values fall in each bin of ``edges``."""
    values = np.asarray(confianza.to_numpy(), dtype=np.float64)
    return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0]
