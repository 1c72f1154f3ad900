"""The analyst-facing Parquet tables of the scoring flow: their Arrow schemas and how parts are written.

Every table is a hive-partitioned dataset under the storage root, partitioned by ``scored_date``
(UTC day of the run), so ``pandas.read_parquet(<root>/predictions)``, DuckDB's
``read_parquet('<root>/predictions/**/*.parquet', hive_partitioning=true)`` and Spark's
``spark.read.parquet`` all read one table. Each file is written with the table's explicit schema,
so a column that a batch lacks is a null column, never a missing one.

File names carry the batch key (content hash): ``<table>/scored_date=<day>/<key>-<part>.parquet``.
That lets a rerun find and remove what an interrupted or replaced run of the same batch left behind,
wherever (whatever day) it was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.storage import Storage

PREDICTIONS = "predictions"
REJECTED = "errors/rejected"
UNREADABLE = "errors/unreadable"
MISCLASSIFIED = "errors/misclassified"
SUMMARIES = "reports/batches"
TABLES = (PREDICTIONS, REJECTED, UNREADABLE, MISCLASSIFIED, SUMMARIES)

UTC_TS = pa.timestamp("us", tz="UTC")

# Input columns the dataset defines, with the types predictions/ stores them as. Any other input
# column is kept too, in ``extra_columns`` as a JSON object, so the schema never changes with input.
PASSTHROUGH = pa.schema([
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
])

BATCH_FIELDS = [
    ("batch", pa.string()),  # the source file's name
    ("batch_key", pa.string()),  # SHA-256 of its content: the exactly-once key
    ("row_number", pa.int64()),  # position of the row in the source file
]


def predictions_schema(labels: Sequence[str]) -> pa.Schema:
    return pa.schema([
        *PASSTHROUGH,
        ("categoria_pred", pa.string()),
        ("confianza", pa.float32()),
        *[(f"prob_{label}", pa.float32()) for label in labels],
        ("model_version", pa.string()),
        *BATCH_FIELDS,
        ("scored_at", UTC_TS),
    ])


# Rejected rows keep the original values as text: a value that broke a rule may not fit the
# predictions' types (a sentimiento of "abc", say), and it must reach the report unchanged.
REJECTED_SCHEMA = pa.schema([
    *[(f.name, pa.string()) for f in PASSTHROUGH],
    *BATCH_FIELDS,
    ("rule", pa.string()),
    ("reason", pa.string()),
    ("rejected_at", UTC_TS),
])

UNREADABLE_SCHEMA = pa.schema([
    ("path", pa.string()),
    ("batch", pa.string()),
    ("batch_key", pa.string()),
    ("size_bytes", pa.int64()),
    ("reason", pa.string()),
    ("detected_at", UTC_TS),
])

MISCLASSIFIED_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("comentario", pa.string()),
    ("tokens", pa.list_(pa.string())),  # as the model saw them: cut to the vocabulary's stems, [UNK] shown
    ("categoria", pa.string()),
    ("categoria_pred", pa.string()),
    ("confianza", pa.float32()),
    ("model_version", pa.string()),
    *BATCH_FIELDS,
    ("scored_at", UTC_TS),
])

SUMMARY_SCHEMA = pa.schema([
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
    ("seconds", pa.float64()),
    ("scored_at", UTC_TS),
])


def partition_dir(table: str, when: datetime) -> str:
    return f"{table}/scored_date={when:%Y-%m-%d}"


def part_name(batch_key: str, part: int) -> str:
    return f"{batch_key}-{part:05d}.parquet"


def write_part(storage: Storage, table: str, when: datetime, batch_key: str, part: int, data: pa.Table) -> str:
    """Write one part file of ``table`` (all-or-nothing for readers); returns its relative path."""
    rel = f"{partition_dir(table, when)}/{part_name(batch_key, part)}"
    with storage.open_write(rel) as handle:
        pq.write_table(data, handle, compression="zstd")
    return rel


def parts_of(storage: Storage, batch_key: str) -> list[str]:
    """Every part file any run wrote for this batch, in every table and partition, and the
    temporary files of writes that a killed run never finished."""
    found: list[str] = []
    for table in TABLES:
        found += storage.glob(f"{table}/scored_date=*/{batch_key}-*.parquet")
        found += storage.temp_files(f"{table}/scored_date=*", batch_key)
    return found
