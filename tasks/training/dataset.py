"""Rules for the labelled comentarios dataset, and the split of valid rows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from lstm_model.memory import release_freed_memory
from lstm_model.splits import stratified_split
from tasks.common.schema import CATEGORIES
from tasks.common.schema import COLUMNS
from tasks.common.schema import SEVERITIES
from tasks.common.validation import NOT_NULL
from tasks.common.validation import Check
from tasks.common.validation import DatasetError
from tasks.common.validation import Rule
from tasks.common.validation import ValidationOutcome
from tasks.common.validation import apply_rules
from tasks.common.validation import as_given
from tasks.common.validation import blank_ids_as_null
from tasks.common.validation import labelled_comment_rules
from tasks.common.validation import missing_columns
from tasks.common.validation import release_gx_context
from tasks.common.validation import short
from tasks.common.validation import text_or_null
from tasks.feedback.labels import LABEL_COLUMNS
from tasks.feedback.labels import ORIGIN


def training_rules(categories: Sequence[str], severities: Sequence[str]) -> list[Rule]:
    return [
        *labelled_comment_rules(categories),
        Rule(
            "severidad_invalid",
            "severidad",
            (NOT_NULL, Check("ExpectColumnValuesToBeInSet", {"value_set": list(severities)})),
            lambda v: f"severidad {short(v)} is not one of {', '.join(severities)}",
        ),
        Rule(
            "sentimiento_out_of_range",
            "sentimiento",
            (NOT_NULL, Check("ExpectColumnValuesToBeBetween", {"min_value": -1.0, "max_value": 1.0})),
            lambda v: f"sentimiento {short(v)} is not a number in [-1, 1]",
        ),
        Rule(
            "timestamp_unparseable",
            "timestamp",
            (NOT_NULL, Check("ExpectColumnValuesToBeDateutilParseable")),
            lambda v: f"timestamp {short(v)} is not a date/time",
        ),
    ]


def check_training_rows(
    frame: pd.DataFrame, categories: Sequence[str] = CATEGORIES, severities: Sequence[str] = SEVERITIES
) -> ValidationOutcome:
    """Validate the labelled dataset; raise :class:`DatasetError` when it is not this dataset at all."""
    missing = missing_columns(frame, COLUMNS)
    if missing:
        raise DatasetError(
            f"required column(s) missing: {', '.join(missing)} (found: {', '.join(map(str, frame.columns))})"
        )
    view = pd.DataFrame(
        {
            "id": blank_ids_as_null(as_given(frame["id"])),  # "" or "  " is a missing id
            "comentario": text_or_null(frame["comentario"]),
            "categoria": as_given(frame["categoria"]),
            "severidad": as_given(frame["severidad"]),
            "sentimiento": pd.to_numeric(frame["sentimiento"], errors="coerce").astype(float),
            "timestamp": text_or_null(frame["timestamp"]),
        }
    )
    outcome = apply_rules(frame, view, training_rules(categories, severities))
    if outcome.valid.empty:
        raise DatasetError(
            f"no valid rows left: all {len(frame)} rows broke a rule ({_summary(outcome.failures)})"
        )
    return outcome


def _summary(failures: dict[str, int]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in failures.items() if n) or "none"


# NO_CACHE on the tasks that take the data: Prefect's default cache key hashes a task's inputs, which
# for a DataFrame means a cloudpickle of the whole frame (hundreds of MB and seconds on a large source).
@task(name="validate-training-data", cache_policy=NO_CACHE)
def validate_training_data(
    frame: pd.DataFrame, categories: Sequence[str], severities: Sequence[str]
) -> ValidationOutcome:
    outcome = check_training_rows(frame, categories, severities)
    release_gx_context()  # once per training run: what GX kept of the whole source goes now
    get_run_logger().info(
        "%d valid rows, %d rejected (%s)",
        len(outcome.valid),
        len(outcome.rejected),
        _summary(outcome.failures),
    )
    return outcome


def training_columns_only(outcome: ValidationOutcome) -> ValidationOutcome:
    """The outcome with its valid rows cut to ``id``, ``comentario`` and ``categoria``: all that
    training, evaluation and the champion comparison read. The source's other columns (country,
    channel, ...) cost as much again on a large source and are not needed once the rows are valid;
    the rejected rows keep every column for the report."""
    valid = outcome.valid[[c for c in LABEL_COLUMNS if c in outcome.valid.columns]]
    slim = ValidationOutcome(valid=valid, rejected=outcome.rejected, failures=outcome.failures)
    release_freed_memory()
    return slim


def fingerprint(frame: pd.DataFrame, chunk: int = 50_000) -> str:
    """SHA-256 of the rows the model learns from (id, text, label), independent of row order.

    The hash of ``json.dumps(sorted(rows))``, as it always was, built a chunk at a time: the rows are
    sorted by Arrow (UTF-8 byte order is code point order, as Python sorts strings) and only
    ``chunk`` of them are Python objects at once (the whole list cost ~500 MB at 664k rows).
    """
    # Arrow-backed text columns are taken as they are (no copy); the sort gives positions only.
    table = pa.table(
        {
            "id": pa.array(frame["id"].astype(str), from_pandas=True),
            "comentario": pa.array(frame["comentario"], from_pandas=True),
            "categoria": pa.array(frame["categoria"], from_pandas=True),
        }
    )
    order = pc.sort_indices(table, sort_keys=[(name, "ascending") for name in table.column_names])
    digest = hashlib.sha256(b"[")
    for start in range(0, table.num_rows, chunk):
        part = table.take(order[start : start + chunk])
        rows = zip(*(part[name].to_pylist() for name in table.column_names), strict=True)
        text = ", ".join(json.dumps(list(row), ensure_ascii=False) for row in rows)
        digest.update((", " if start else "").encode() + text.encode())
    digest.update(b"]")
    return digest.hexdigest()


def check_classes(
    valid: pd.DataFrame, splits: dict[str, pd.DataFrame], categories: Sequence[str], min_rows: int
) -> None:
    """Raise :class:`DatasetError` unless every class has ``min_rows`` valid rows and appears in
    every split: a model that never saw a class, or is tested without it, must not be published (it
    would report "accuracy 0.0000 (0 rows)" and look like a result)."""
    counts = valid["categoria"].value_counts()
    few = {label: int(counts.get(label, 0)) for label in categories if counts.get(label, 0) < min_rows}
    if few:
        listed = ", ".join(f"{label} {n}" for label, n in few.items())
        raise DatasetError(f"too few valid rows to train: {listed} (at least {min_rows} per class needed)")
    for name, part in splits.items():
        missing = sorted(set(categories) - set(part["categoria"]))
        if missing:
            raise DatasetError(
                f"the {name} split has no rows of class {', '.join(missing)} ({len(part)} rows in it; "
                "a class needs at least 3 valid rows to be in every split)"
            )


@task(name="split-dataset", cache_policy=NO_CACHE)
def split_dataset(
    frame: pd.DataFrame,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    categories: Sequence[str] = CATEGORIES,
    min_rows_per_class: int = 10,
) -> dict[str, pd.DataFrame]:
    """Stratified, seeded parts. Rows of each ``origin`` (source, analysts' labels) are split on their
    own, so the few label rows land in every part in the same proportions as the source rows."""
    groups = frame.groupby(ORIGIN, sort=False, observed=True) if ORIGIN in frame.columns else [(None, frame)]
    chunks: dict[str, list[pd.DataFrame]] = {"train": [], "val": [], "test": []}
    for origin, group in groups:
        parts = stratified_split(
            group["categoria"].tolist(), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
        )
        for name, rows in parts.items():
            chunks[name].append(group.iloc[rows])
        of = f" of the {origin} rows" if origin is not None else ""
        get_run_logger().info("Split%s: %s", of, {name: len(rows) for name, rows in parts.items()})
    splits = {name: pd.concat(parts).reset_index(drop=True) for name, parts in chunks.items()}
    # the last group is a copy of its rows: not kept while the classes are checked
    chunks = groups = parts = group = None
    check_classes(frame, splits, categories, min_rows_per_class)
    release_freed_memory()  # the per-origin parts' copies, before training allocates its own
    return splits
