"""The ``score-batches`` flow: new Parquet batches -> predictions and error reports, exactly once."""

from __future__ import annotations

import os
import tempfile
import uuid

from prefect import flow
from prefect import get_run_logger
from prefect.task_runners import TaskRunner
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from flows.configs import ScoreConfig
from tasks.registry.versions import resolve_model
from tasks.scoring.batch_job import ScoringRun
from tasks.scoring.batch_job import score_batch
from tasks.scoring.batch_summaries import publish_batch_summaries
from tasks.scoring.discovery import find_batches
from tasks.scoring.input_guard import check_input
from tasks.scoring.run_report import publish_run_report
from tasks.scoring.run_report import tables_written
from tasks.scoring.score_file import BatchResult


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
    skipped: dict[
        str, str
    ] = {}  # file -> why it was not scored by this run (claimed elsewhere, too young...)
    unchanged: int = 0  # files scored by earlier runs and unchanged since: not read at all
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


def _run_id() -> str:
    """This flow run's id (named in claims and ledger records); a fresh id outside Prefect."""
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())


@flow(name="score-batches", log_prints=True)
def score_batches(config: ScoreConfig = ScoreConfig()) -> ScoreSummary:
    logger = get_run_logger()
    storage = config.storage_root()
    check_input(storage, config.input)  # never score this storage's own output (also checked by the CLI)
    version = resolve_model(storage, config.model)
    found = find_batches(storage, config.input, config.rescore, config.min_file_age)
    settings = config.scoring_settings()
    run = ScoringRun(run_id=_run_id(), claim_seconds=config.claim_seconds, rescore=config.rescore)
    results: list[BatchResult] = []
    failed: dict[str, str] = {}
    if found.files:
        with build_task_runner(config) as runner:
            futures = [
                runner.submit(
                    score_batch,
                    {"storage": storage, "file": file, "version": version, "settings": settings, "run": run},
                )
                for file in found.files
            ]
            for file, future in zip(found.files, futures, strict=True):
                try:
                    results.append(future.result())
                except Exception as exc:  # one bad batch never stops the others; the run fails at the end
                    failed[file.name] = f"{type(exc).__name__}: {exc}"
    processed = [r for r in results if r.status != "skipped"]
    publish_batch_summaries(processed)
    # The report never hides how the batches went: if it cannot be written (storage down), its task
    # logs the error and the run goes on to its own outcome.
    report = publish_run_report(storage, version, processed, failed, return_state=True)
    report_uri = report.result() if report.is_completed() else None
    summary = ScoreSummary(
        model_version=version,
        scored=[r.batch for r in results if r.status == "scored"],
        unreadable={r.batch: r.reason or "" for r in results if r.status == "unreadable"},
        failed=failed,
        skipped={**found.skipped, **{r.batch: r.reason or "" for r in results if r.status == "skipped"}},
        unchanged=len(found.known),
        rows_in=sum(r.rows_in for r in results),
        rows_predicted=sum(r.rows_predicted for r in results),
        rows_rejected=sum(r.rows_rejected for r in results),
        rows_flagged=sum(r.summary.rows_flagged for r in results if r.summary),
        tables=tables_written(storage, results),
        report_uri=report_uri,
    )
    logger.info(
        "Scored %d batch(es): %d rows in, %d predicted (%d flagged for review), %d rejected; "
        "%d file(s) skipped, %d unchanged",
        len(summary.scored),
        summary.rows_in,
        summary.rows_predicted,
        summary.rows_flagged,
        summary.rows_rejected,
        len(summary.skipped),
        summary.unchanged,
    )
    problems = [f"{name}: unreadable ({why})" for name, why in summary.unreadable.items()]
    problems += [f"{name}: failed ({why})" for name, why in failed.items()]
    if problems:
        raise BatchesFailed(f"{len(problems)} batch(es) not scored: " + "; ".join(problems), summary)
    return summary
