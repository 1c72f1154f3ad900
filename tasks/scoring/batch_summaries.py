"""The ``score-batch-summaries`` table artifact: one row per batch a scoring run scored or found unreadable.

The run report (:mod:`tasks.scoring.run_report`) tells the story with charts; this table is what the
Prefect UI lists beside the run, numbers first.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.scoring.score_file import BatchResult


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def batch_summary_rows(results: Sequence[BatchResult]) -> list[dict]:
    """One row per batch of a scoring run: the ``score-batch-summaries`` table artifact."""
    rows = []
    for r in results:
        s = r.summary
        rows.append(
            {
                "batch": r.batch,
                "status": r.status,
                "rows_in": r.rows_in,
                "predicted": r.rows_predicted,
                "rejected": r.rows_rejected,
                "flagged_for_review": s.rows_flagged if s else None,
                "mean_confianza": _rounded(s.mean_confianza) if s else None,
                "unknown_token_share": _rounded(s.unknown_token_share) if s else None,
                "training_unknown_token_share": _rounded(s.training_unknown_token_share) if s else None,
                "accuracy": _rounded(s.accuracy) if s else None,
                "reason": r.reason,
                # last: the widest column, it pushed the numbers off screen (the run report has a chart)
                "class_mix": ", ".join(f"{k}={v}" for k, v in s.class_counts) if s else None,
            }
        )
    return rows


@task(name="publish-batch-summaries", cache_policy=NO_CACHE)
def publish_batch_summaries(results: list[BatchResult]) -> None:
    create_table_artifact(
        key="score-batch-summaries",
        table=batch_summary_rows(results) or [{"batch": None, "status": "no new batches"}],
        description="One row per batch scored (or found unreadable) by this run",
    )
