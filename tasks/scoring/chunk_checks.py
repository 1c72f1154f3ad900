"""Checking one chunk of an incoming batch: typed rows to score, and a report of the rows rejected.

Only ``id`` and ``comentario`` are required; the dataset's other columns are optional and passed
through with the types of :data:`tasks.scoring.outputs.PASSTHROUGH`, and any unknown column is kept in
``extra_columns`` (JSON). A value that cannot take its column's type (a ``sentimiento`` of "abc")
rejects the row rather than being silently nulled.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.common.validation import ID_MISSING
from tasks.common.validation import NOT_NULL
from tasks.common.validation import NOT_SPACE
from tasks.common.validation import ROW
from tasks.common.validation import Check
from tasks.common.validation import Rule
from tasks.common.validation import failing_rows
from tasks.common.validation import short
from tasks.scoring.outputs import PASSTHROUGH
from tasks.scoring.outputs import REJECTED_SCHEMA

REQUIRED = ("id", "comentario")
KNOWN = [f.name for f in PASSTHROUGH if f.name != "extra_columns"]
IS_FALSE = Check("ExpectColumnValuesToBeInSet", {"value_set": [False]})
IS_TRUE = Check("ExpectColumnValuesToBeInSet", {"value_set": [True]})


def scoring_rules(max_chars: int) -> list[Rule]:
    """The row rules of a batch, as Great Expectations checks on a numeric view of the chunk.

    Text columns cost GX (pandas string arrays, a Python regex per row, hashing the frame) far more
    than numbers, and a chunk holds tens of thousands of comments. So Arrow computes, per row, what
    each rule looks at (the comment's length, whether it has a non-space character, whether a value could be typed)
    and GX checks those columns; the reasons still quote the row's original value (``quotes``).
    """
    return [
        # the training rule: id_length is null for an id that is empty or only white space (rule_view)
        Rule("id_missing", "id_length", (NOT_NULL,), ID_MISSING.reason, quotes="id"),
        Rule(
            "comentario_missing",
            "comentario_length",
            (NOT_NULL,),
            lambda v: f"comentario is missing or not text ({short(v)})",
            quotes="comentario",
        ),
        Rule(
            "comentario_blank",
            "comentario_has_text",
            (IS_TRUE,),
            lambda v: "comentario is empty or only whitespace",
            quotes="comentario",
        ),
        Rule(
            "comentario_too_long",
            "comentario_length",
            (Check("ExpectColumnValuesToBeBetween", {"max_value": max_chars}),),
            lambda v: (
                f"comentario has {len(v) if isinstance(v, str) else '?'} characters, over the limit of {max_chars}"
            ),
            quotes="comentario",
        ),
        Rule(
            "timestamp_invalid",
            "timestamp_invalid",
            (IS_FALSE,),
            lambda v: f"timestamp {short(v)} is not a date/time",
            quotes="timestamp",
        ),  # fmt: skip
        Rule(
            "sentimiento_invalid",
            "sentimiento_invalid",
            (IS_FALSE,),
            lambda v: f"sentimiento {short(v)} is not a number",
            quotes="sentimiento",
        ),  # fmt: skip
    ]


def rule_view(rows: pa.Table, invalid: dict[str, np.ndarray]) -> pd.DataFrame:
    """The numeric columns the scoring rules check, one row per chunk row (see :func:`scoring_rules`)."""
    comments = rows["comentario"]
    lengths = pc.utf8_length(comments).to_numpy(zero_copy_only=False).astype(float)  # NaN where null
    has_text = pc.match_substring_regex(comments, NOT_SPACE).to_numpy(zero_copy_only=False)  # None where null
    return pd.DataFrame(
        {
            "id_length": id_lengths(rows["id"]).to_numpy(zero_copy_only=False).astype(float),
            "comentario_length": lengths,
            "comentario_has_text": pd.array(has_text, dtype=object),
            **invalid,
            ROW: np.arange(rows.num_rows),
        }
    )


def id_lengths(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Length of each id, null where the id is null, empty or only white space (``id_missing``, as in
    training: :func:`tasks.common.validation.blank_ids_as_null`)."""
    has_text = pc.match_substring_regex(ids, NOT_SPACE)
    return pc.if_else(has_text, pc.utf8_length(ids), pa.scalar(None, pa.int32()))


DUPLICATE_RULE = "id_duplicate"


@dataclass(frozen=True)
class CheckedChunk:
    valid: pa.Table  # PASSTHROUGH columns + row_number, only rows that passed every rule
    rejected: pa.Table  # REJECTED_SCHEMA minus batch fields and rejected_at


def as_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Any Arrow column as strings (ids may come as numbers; odd types through Python's str)."""
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())


def _timestamps(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """UTC timestamps and a mask of values that were present but could not be read as one."""
    if pa.types.is_timestamp(column.type):
        # safe=False: nanosecond timestamps are truncated to the microseconds the schema keeps.
        micros = column.cast(pa.timestamp("us", tz=column.type.tz), safe=False)
        if not column.type.tz:
            micros = pc.assume_timezone(micros, "UTC")
        return micros.cast(pa.timestamp("us", tz="UTC")).combine_chunks(), np.zeros(len(column), bool)
    text = as_text(column)
    parsed = pd.to_datetime(
        pd.Series(text.to_pylist(), dtype=object), errors="coerce", utc=True, format="ISO8601"
    ).dt.floor("us")
    invalid = parsed.isna().to_numpy() & ~np.asarray(text.is_null().to_numpy(zero_copy_only=False))
    return pa.array(parsed, type=pa.timestamp("us", tz="UTC"), from_pandas=True), invalid


def _numbers(column: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    if (
        pa.types.is_integer(column.type)
        or pa.types.is_floating(column.type)
        or pa.types.is_decimal(column.type)
    ):
        return column.cast(pa.float64()).combine_chunks(), np.zeros(len(column), bool)
    text = as_text(column)
    parsed = pd.to_numeric(pd.Series(text.to_pylist(), dtype=object), errors="coerce")
    invalid = parsed.isna().to_numpy() & ~np.asarray(text.is_null().to_numpy(zero_copy_only=False))
    return pa.array(parsed.to_numpy(dtype=float), pa.float64(), mask=parsed.isna().to_numpy()), invalid


def _extra_json(table: pa.Table, extra: list[str]) -> pa.Array:
    if not extra:
        return pa.nulls(table.num_rows, pa.string())
    selected = table.select(extra)
    for i, field in enumerate(selected.schema):
        if (
            pa.types.is_binary(field.type)
            or pa.types.is_large_binary(field.type)
            or pa.types.is_fixed_size_binary(field.type)
        ):
            # bytes are not JSON: keep them as base64 text
            values = [
                None if v is None else base64.b64encode(v).decode("ascii")
                for v in selected.column(i).to_pylist()
            ]
            selected = selected.set_column(i, field.name, pa.array(values, pa.string()))
    lines = selected.to_pandas().to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    # split on "\n" only: str.splitlines() would also split inside values on U+2028, U+0085...
    return pa.array(lines.rstrip("\n").split("\n") if lines else [], pa.string())


def _decode_dictionaries(chunk: pa.Table) -> pa.Table:
    """Dictionary-encoded columns (pandas categoricals written to Parquet) as plain values."""
    for i, field in enumerate(chunk.schema):
        if pa.types.is_dictionary(field.type):
            chunk = chunk.set_column(i, field.name, chunk.column(i).cast(field.type.value_type))
    return chunk


def check_chunk(chunk: pa.Table, first_row: int, duplicate_rows: set[int], max_chars: int) -> CheckedChunk:
    """Type the known columns, run the rules with GX, and split the chunk into valid and rejected rows."""
    n = chunk.num_rows
    chunk = _decode_dictionaries(chunk)
    present = set(chunk.column_names)
    typed: dict[str, pa.Array] = {}
    invalid = {"timestamp_invalid": np.zeros(n, bool), "sentimiento_invalid": np.zeros(n, bool)}
    for name in KNOWN:
        if name not in present:
            typed[name] = pa.nulls(n, PASSTHROUGH.field(name).type)
        elif name == "timestamp":
            typed[name], invalid["timestamp_invalid"] = _timestamps(chunk[name])
        elif name == "sentimiento":
            typed[name], invalid["sentimiento_invalid"] = _numbers(chunk[name])
        elif name == "comentario":
            # Only real text is a comment: a number or a list in this column breaks comentario_missing.
            column = chunk[name]
            typed[name] = (
                column.combine_chunks()
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                else pa.nulls(n, pa.string())
            )
            typed[name] = typed[name].cast(pa.string())
        else:
            typed[name] = as_text(chunk[name].combine_chunks())
    typed["extra_columns"] = _extra_json(chunk, [c for c in chunk.column_names if c not in KNOWN])
    rows = pa.table(typed, schema=PASSTHROUGH)

    rules = scoring_rules(max_chars)
    broken = failing_rows(rule_view(rows, invalid), rules)
    broken[DUPLICATE_RULE] = {r - first_row for r in duplicate_rows if first_row <= r < first_row + n}
    by_row: dict[int, list[str]] = {}
    for name in [DUPLICATE_RULE, *(r.name for r in rules)]:
        for row in broken.get(name, ()):
            by_row.setdefault(row, []).append(name)
    reject_mask = np.zeros(n, bool)
    reject_mask[list(by_row)] = True
    row_number = pa.array(np.arange(first_row, first_row + n), pa.int64())
    valid = rows.append_column("row_number", row_number).filter(pa.array(~reject_mask))
    rejected = _rejected_rows(chunk, rows, by_row, rules, row_number)
    return CheckedChunk(valid, rejected)


def _rejected_rows(
    chunk: pa.Table, rows: pa.Table, by_row: dict[int, list[str]], rules: list[Rule], row_number: pa.Array
) -> pa.Table:
    positions = sorted(by_row)
    reasons = {r.name: r for r in rules}
    originals = {name: (chunk[name] if name in chunk.column_names else None) for name in KNOWN}
    out: dict[str, list] = {
        name: [] for name in REJECTED_SCHEMA.names if name not in ("batch", "batch_key", "rejected_at")
    }
    for p in positions:
        for name in KNOWN:
            value = originals[name][p].as_py() if originals[name] is not None else None
            out[name].append(
                None
                if value is None
                else (value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False))
            )
        out["extra_columns"].append(rows["extra_columns"][p].as_py())
        out["row_number"].append(row_number[p].as_py())
        names = by_row[p]
        out["rule"].append(",".join(names))
        texts = []
        for name in names:
            if name == DUPLICATE_RULE:
                texts.append(f"id {short(out['id'][-1])} appears more than once in the batch")
            else:
                rule = reasons[name]
                original = originals.get(rule.quoted_column)
                texts.append(rule.reason(original[p].as_py() if original is not None else None))
        out["reason"].append("; ".join(texts))
    fields = [REJECTED_SCHEMA.field(name) for name in out]
    return pa.table(
        {name: pa.array(values, f.type) for (name, values), f in zip(out.items(), fields, strict=True)}
    )
