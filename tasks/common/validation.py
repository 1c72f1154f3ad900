"""Row and schema checks with Great Expectations 1.x, turned into a valid frame and a rejected-rows report.

Each :class:`Rule` is one named business rule backed by one or more GX expectations. GX is asked
for the positions of the failing rows (through a ``_row`` column, since a null or repeated ``id``
cannot identify a row); every failing row goes to the report once, with all the rules it broke,
and the rest go on. Nothing is dropped silently: ``len(valid) + len(rejected) == len(input)``.

GX is imported inside the functions: it takes about 2 s to import, and ``comentarios --help``
should not pay for it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

ROW = "_row"
logging.getLogger("great_expectations").setLevel(logging.WARNING)


class DatasetError(ValueError):
    """The input is not this dataset at all; the message is one line that says why."""


@dataclass(frozen=True)
class Check:
    """One GX expectation, by class name (``gxe.<kind>``) and keyword arguments, on a view column."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    name: str
    column: str  # the view column the checks run on
    checks: tuple[Check, ...]
    reason: Callable[[Any], str]  # called with the input value of ``quotes`` (default: ``column``)
    quotes: str | None = None

    @property
    def quoted_column(self) -> str:
        return self.quotes or self.column


@dataclass(frozen=True)
class ValidationOutcome:
    valid: pd.DataFrame
    rejected: pd.DataFrame  # input columns + rule + reason
    failures: dict[str, int]  # rule name -> rows that broke it


# One GX context per process: creating one costs seconds, and scoring validates many chunks.
# GX contexts are not documented as thread-safe, so validations in one process take turns.
_GX_LOCK = threading.RLock()


@lru_cache(maxsize=1)
def _gx_batch_definition():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("comentarios").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole")


@lru_cache(maxsize=16)
def _suite(spec: tuple[tuple[str, str, str, str], ...]):
    """The suite of (rule, column, expectation class, JSON kwargs) checks, built once per process: a
    scoring run validates every chunk with the same rules, and building a suite is a third of the
    cost of a validation."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    # Each expectation carries its rule's name: GX does not return results in suite order (it
    # groups them by the metrics they share), and two rules may check the same column.
    expectations = [
        getattr(gxe, kind)(column=column, meta={"rule": rule}, **json.loads(kwargs))
        for rule, column, kind, kwargs in spec
    ]
    return gx.ExpectationSuite(name="checks", expectations=expectations)


def release_gx_context() -> None:
    """Drop this process's GX context and suites (the next validation makes new ones, ~2 s).

    A one-off validation of a large frame (the training source) leaves the context holding what it
    computed for that batch; a training run then carries it to the end. Scoring keeps its context:
    it validates every chunk with the same rules.
    """
    import gc

    with _GX_LOCK:
        _gx_batch_definition.cache_clear()
        _suite.cache_clear()
    gc.collect()


def _validate(frame: pd.DataFrame, spec: tuple, result_format: dict | str = "SUMMARY"):
    with _GX_LOCK:
        batch = _gx_batch_definition().get_batch(batch_parameters={"dataframe": frame})
        try:
            return batch.validate(_suite(spec), result_format=result_format)
        finally:
            _forget_batch(batch)


def _forget_batch(batch: Any) -> None:
    """Drop the validated frame from the GX execution engine's caches.

    GX keeps the last batch's data in its engine until the next batch replaces it, and the context
    lives in a module-level project manager: a training run carried its whole parsed source (~130 MB
    at 664k rows) to the end, and a scoring run carried its last chunk.
    """
    manager = batch.data.execution_engine.batch_manager
    manager.batch_data_cache.clear()
    manager.reset_batch_cache()


NOT_NULL = Check("ExpectColumnValuesToNotBeNull")
# A character that is not white space as Python's str.isspace() sees it (RE2's \s is ASCII only).
NOT_SPACE = r"[^\s\p{Z}\x{0b}\x{1c}-\x{1f}\x{85}]"


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _id_missing_reason(value: Any) -> str:
    return "id is missing" if _is_null(value) else f"id {short(value)} is empty or only whitespace"


# Rules the training data and the scored batches share. An id that is empty or only white space is a
# missing id, in the training source, the label files and the scored batches alike: the rules check the
# ids through blank_ids_as_null (scoring: the same test in Arrow, tasks/scoring/chunk_checks.py).
ID_MISSING = Rule("id_missing", "id", (NOT_NULL,), _id_missing_reason)


def blank_ids_as_null(values: pd.Series) -> pd.Series:
    """Ids as :data:`ID_MISSING` checks them: a string that is empty or only white space is null.
    Returns ``values`` itself (no copy) when no id is blank."""
    if isinstance(values.dtype, pd.StringDtype):
        import pyarrow as pa
        import pyarrow.compute as pc

        has_text = pc.match_substring_regex(pa.array(values, type=pa.string(), from_pandas=True), NOT_SPACE)
        blank = ~np.asarray(has_text.fill_null(True).to_numpy(zero_copy_only=False), dtype=bool)
    else:
        blank = np.fromiter((isinstance(v, str) and not v.strip() for v in values), bool, len(values))
    return values.mask(blank) if blank.any() else values


COMENTARIO_MISSING = Rule(
    "comentario_missing",
    "comentario",
    (NOT_NULL,),
    lambda v: f"comentario is missing or not text ({short(v)})",
)
COMENTARIO_BLANK = Rule(
    "comentario_blank",
    "comentario",
    (Check("ExpectColumnValuesToMatchRegex", {"regex": r"\S"}),),
    lambda v: "comentario is empty or only whitespace",
)


def labelled_comment_rules(
    categories: Sequence[str], duplicate: str = "appears more than once"
) -> list[Rule]:
    """The rules of a labelled comment, from the training source or an analyst's label file: an id,
    unique (``duplicate`` ends the reason), a comentario that is text and not blank, a known categoria."""
    return [
        ID_MISSING,
        Rule(
            "id_duplicate",
            "id",
            (Check("ExpectColumnValuesToBeUnique"),),
            lambda v: f"id {short(v)} {duplicate}",
        ),
        COMENTARIO_MISSING,
        COMENTARIO_BLANK,
        Rule(
            "categoria_invalid",
            "categoria",
            (NOT_NULL, Check("ExpectColumnValuesToBeInSet", {"value_set": list(categories)})),
            lambda v: f"categoria {short(v)} is not one of {', '.join(categories)}",
        ),
    ]


def missing_columns(frame: pd.DataFrame, required: Sequence[str]) -> list[str]:
    """Required columns that the frame lacks, checked with GX's ``ExpectColumnToExist``."""
    spec = tuple((f"column_{column}", column, "ExpectColumnToExist", "{}") for column in required)
    result = _validate(frame.head(0), spec)
    return [r.expectation_config.kwargs["column"] for r in result.results if not r.success]


def failing_rows(view: pd.DataFrame, rules: Sequence[Rule]) -> dict[str, set[int]]:
    """Rule name -> positions (values of ``_row``) of the rows that break it."""
    if view.empty:
        return {rule.name: set() for rule in rules}
    spec = tuple(
        (rule.name, rule.column, check.kind, json.dumps(check.kwargs, sort_keys=True))
        for rule in rules
        for check in rule.checks
    )
    result = _validate(view, spec, {"result_format": "COMPLETE", "unexpected_index_column_names": [ROW]})
    failures: dict[str, set[int]] = {rule.name: set() for rule in rules}
    for outcome in result.results:
        owner = outcome.expectation_config.meta["rule"]
        if outcome.exception_info and outcome.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"validation rule {owner} could not run: {outcome.exception_info['exception_message']}"
            )
        for hit in outcome.result.get("unexpected_index_list") or []:
            failures[owner].add(int(hit[ROW]))
    return failures


def apply_rules(frame: pd.DataFrame, view: pd.DataFrame, rules: Sequence[Rule]) -> ValidationOutcome:
    """Split ``frame`` into valid rows and a report of the rest, using checks run on ``view``.

    ``view`` holds the same rows (same order) with the columns the rules read, already typed (for
    example ``sentimiento`` as a number, non-text comments as null); the report keeps the original
    values from ``frame``.
    """
    view = view.assign(**{ROW: range(len(view))}).reset_index(drop=True)
    failures = failing_rows(view, rules)
    broken: dict[int, list[Rule]] = {}
    for rule in rules:
        for row in sorted(failures[rule.name]):
            broken.setdefault(row, []).append(rule)
    positions = sorted(broken)
    rejected = frame.iloc[positions].copy()
    rejected["rule"] = [",".join(r.name for r in broken[p]) for p in positions]
    rejected["reason"] = [
        "; ".join(
            r.reason(frame.iloc[p][r.quoted_column] if r.quoted_column in frame.columns else None)
            for r in broken[p]
        )
        for p in positions
    ]
    keep = [p for p in range(len(frame)) if p not in broken]
    return ValidationOutcome(
        valid=frame.iloc[keep].reset_index(drop=True),
        rejected=rejected.reset_index(drop=True),
        failures={name: len(rows) for name, rows in failures.items()},
    )


def text_or_null(values: pd.Series) -> pd.Series:
    """Strings stay; anything else (numbers, lists, NaN) becomes null, so text rules see it as missing.

    A column of pandas' string dtype holds only text and nulls already: it is returned as it is
    (no copy as Python objects, which costs hundreds of MB on a large training set).
    """
    if isinstance(values.dtype, pd.StringDtype):
        return values
    return values.map(lambda v: v if isinstance(v, str) else None).astype(object)


def as_given(values: pd.Series) -> pd.Series:
    """The column for rules that compare values: string columns as they are, anything else as objects."""
    return values if isinstance(values.dtype, pd.StringDtype) else values.astype(object)


def short(value: Any, limit: int = 60) -> str:
    if isinstance(value, np.generic):  # 1, not np.int64(1)
        value = value.item()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
