"""The rows a training run learns from: the validated source plus the analysts' labels.

Label rows replace source rows with the same ``id``; every row left out (by a rule, by a later label
file, by a label) is in one report, ``rejected_rows.parquet``, whose ``source_file`` column says
where it came from. Each training row carries its ``origin`` (``source`` or ``labels``): the split is
stratified within each origin, label rows are up-weighted in training (``--label-weight``), and
their test part is reported as its own evaluation set (``labels``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common.validation import DatasetError
from tasks.common.validation import ValidationOutcome
from tasks.common.validation import short
from tasks.feedback.labels import LABEL_COLUMNS
from tasks.feedback.labels import ORIGIN
from tasks.feedback.labels import REPLACED
from tasks.feedback.labels import ROW_NUMBER
from tasks.feedback.labels import SOURCE_FILE
from tasks.feedback.labels import LabelSet
from tasks.registry.eval_rows import EVAL_SET

SOURCE, LABELS = "source", "labels"


@dataclass(frozen=True)
class TrainingRows:
    rows: pd.DataFrame  # source columns (label rows: id, comentario, categoria) + origin
    rejected: pd.DataFrame  # every row left out, with source_file, rule and reason
    summary: dict[str, Any]  # counts for bundle.json ("data") and the run's log


def combine(checked: ValidationOutcome, labels: LabelSet, source: str) -> TrainingRows:
    """Source rows (minus those an analyst relabelled) and label rows, with one report of the rest."""
    source_rows = checked.valid.assign(**{ORIGIN: SOURCE})
    source_rows["id"] = source_rows["id"].astype(str)
    # Arrow-backed strings on both sides, so the concat below keeps them: with one side of Python
    # objects the whole result is objects (~2.5x the memory at 664k rows, held by the splits).
    label_rows = labels.rows[list(LABEL_COLUMNS)].astype(str).assign(**{ORIGIN: LABELS})
    relabelled = source_rows["id"].isin(set(label_rows["id"]))
    winners = labels.rows.set_index("id")
    replaced = source_rows[relabelled].drop(columns=[ORIGIN])
    replaced = replaced.assign(
        rule=REPLACED,
        reason=[
            f"id {short(i)} is labelled in {winners.at[i, SOURCE_FILE]} "
            f"(categoria {c} -> {winners.at[i, 'categoria']})"
            for i, c in zip(replaced["id"], replaced["categoria"], strict=True)
        ],
    )
    # The source's report always comes first, with its columns, even when it holds no row.
    report = checked.rejected.assign(**{SOURCE_FILE: source})
    more = [frame for frame in (replaced.assign(**{SOURCE_FILE: source}), labels.rejected) if len(frame)]
    if more:
        report = pd.concat([report, *more], ignore_index=True)
    if ROW_NUMBER in report:  # source rows have none: nullable integers, not floats
        report[ROW_NUMBER] = report[ROW_NUMBER].astype("Int64")
    rows = pd.concat([source_rows[~relabelled], label_rows], ignore_index=True)
    rows[ORIGIN] = rows[ORIGIN].astype(pd.CategoricalDtype([SOURCE, LABELS]))  # 1 byte a row
    summary = {
        "source": source,
        "source_rows": len(checked.valid) + len(checked.rejected),
        "source_rows_used": int((~relabelled).sum()),
        "label_files": list(labels.files),
        "label_files_unreadable": [{"file": name, "reason": why} for name, why in labels.unreadable],
        "label_files_skipped": list(labels.skipped),
        "label_files_waiting": list(labels.waiting),
        "label_rows": len(label_rows),
        "label_rows_left_out": len(labels.rejected),
        "unlabelled_rows": labels.unlabelled,
        "conflicting_ids": len(labels.conflicts),
        "source_rows_replaced_by_labels": int(relabelled.sum()),
        "rows_used": len(rows),
        "rows_left_out": len(report),
    }
    return TrainingRows(rows, report, summary)


@task(name="combine-training-rows", cache_policy=NO_CACHE)
def combine_training_rows(checked: ValidationOutcome, labels: LabelSet, source: str) -> TrainingRows:
    data = combine(checked, labels, source)
    s = data.summary
    get_run_logger().info(
        "Training rows: %d (%d from the source, %d labelled by analysts; %d source rows replaced by a "
        "label); %d rows left out (rejected_rows.parquet)",
        s["rows_used"],
        s["source_rows_used"],
        s["label_rows"],
        s["source_rows_replaced_by_labels"],
        s["rows_left_out"],
    )
    return data


def evaluation_rows(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows a version is judged on, kept with it as ``eval.parquet``: the source rows of the test
    split (set ``test``) and the label rows of it (set ``labels``)."""
    test = splits["test"]
    origin = test[ORIGIN].astype(str) if ORIGIN in test.columns else pd.Series(SOURCE, index=test.index)
    sets = origin.map({SOURCE: "test", LABELS: "labels"})
    frame = pd.DataFrame(
        {
            "id": test["id"].astype(str),
            "comentario": test["comentario"],
            "categoria": test["categoria"],
            EVAL_SET: sets,
        }
    )
    return frame.reset_index(drop=True)


def evaluation_sets(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``eval.parquet`` rows as one frame per set (sets without rows left out)."""
    return {
        name: rows[rows[EVAL_SET] == name].drop(columns=[EVAL_SET]).reset_index(drop=True)
        for name in ("test", "labels")
        if (rows[EVAL_SET] == name).any()
    }


def gate_set(sets: Sequence[str]) -> str:
    """The evaluation set ``--promote-threshold`` is judged on: the source's test rows (``test``);
    when label files relabel every source id, no source row is left and the test split holds label
    rows only, so the threshold applies to those (``labels``). Raise when neither has rows."""
    for name in ("test", "labels"):
        if name in sets:
            return name
    raise DatasetError("the test split has no rows: nothing to judge the model on (raise --test-fraction)")
