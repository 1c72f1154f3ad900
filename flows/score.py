"""The ``score-batches`` flow: new Parquet batches -> predictions and error reports, exactly once."""

from __future__ import annotations

import os
import tempfile

from prefect import flow
from prefect import get_run_logger
from prefect.task_runners import TaskRunner
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from flows.configs import ScoreConfig
from tasks.batches import find_batches
from tasks.registry import resolve_model
from tasks.reports import publish_batch_summaries
from tasks.run_report import publish_run_report
from tasks.run_report import tables_written
from tasks.scoring import BatchResult
from tasks.scoring import score_batch


class BatchesFailed(RuntimeError):
    """Raised after every good batch is written, so the run ends Failed and an alert can fire; carries
    the run's summary (what was written) for the CLI to print."""

    def __init__(self, message: str, summary: ScoreSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class ScoreSummary(BaseModel):
    model_version: str
    scored: list[str]
    unreadable: dict[str, str]
    failed: dict[str, str]
    rows_in: int
    rows_predicted: int
    rows_rejected: int
    rows_flagged: int  # predictions with needs_review
    tables: dict[str, str] = {}  # output table -> URI, for the tables this run wrote rows to
    report_uri: str | None = None  # the run report (HTML) under reports/runs/, if one was written


def build_task_runner(config: ScoreConfig) -> TaskRunner:
    """The task runner this run asked for. Chosen per run (a parameter), not fixed in the decorator,
    so the same deployment can score on one machine tonight and on a Dask cluster tomorrow."""
    if config.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=config.workers)
    from prefect_dask import DaskTaskRunner

    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": config.workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",
            "local_directory": tempfile.mkdtemp(prefix="comentarios-dask-"),
            # Share the cores between the worker processes instead of each torch using all of them.
            "env": {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // config.workers))},
        }
    )


@flow(name="score-batches", log_prints=True)
def score_batches(config: ScoreConfig = ScoreConfig()) -> ScoreSummary:
    logger = get_run_logger()
    storage = config.storage_root()
    version = resolve_model(storage, config.model)
    batches = find_batches(storage, config.input, config.rescore)
    settings = config.scoring_settings()
    results: list[BatchResult] = []
    failed: dict[str, str] = {}
    if batches:
        with build_task_runner(config) as runner:
            futures = [
                runner.submit(
                    score_batch,
                    {"storage": storage, "batch": batch, "version": version, "settings": settings},
                )
                for batch in batches
            ]
            for batch, future in zip(batches, futures, strict=True):
                try:
                    results.append(future.result())
                except Exception as exc:  # one bad batch never stops the others; the run fails at the end
                    failed[batch.name] = f"{type(exc).__name__}: {exc}"
    publish_batch_summaries(results)
    # The report never hides how the batches went: if it cannot be written (storage down), its task
    # logs the error and the run goes on to its own outcome.
    report = publish_run_report(storage, version, results, failed, return_state=True)
    report_uri = report.result() if report.is_completed() else None
    summary = ScoreSummary(
        model_version=version,
        scored=[r.batch for r in results if r.status == "scored"],
        unreadable={r.batch: r.reason or "" for r in results if r.status == "unreadable"},
        failed=failed,
        rows_in=sum(r.rows_in for r in results),
        rows_predicted=sum(r.rows_predicted for r in results),
        rows_rejected=sum(r.rows_rejected for r in results),
        rows_flagged=sum(r.summary.rows_flagged for r in results if r.summary),
        tables=tables_written(storage, results),
        report_uri=report_uri,
    )
    logger.info(
        "Scored %d batch(es): %d rows in, %d predicted (%d flagged for review), %d rejected",
        len(summary.scored),
        summary.rows_in,
        summary.rows_predicted,
        summary.rows_flagged,
        summary.rows_rejected,
    )
    problems = [f"{name}: unreadable ({why})" for name, why in summary.unreadable.items()]
    problems += [f"{name}: failed ({why})" for name, why in failed.items()]
    if problems:
        raise BatchesFailed(f"{len(problems)} batch(es) not scored: " + "; ".join(problems), summary)
    return summary
