"""Scoring one batch file end to end, in bounded memory, exactly once.

:func:`score_file` is the whole job for one batch once its content is known and claimed (plain Python,
testable without Prefect); :mod:`tasks.scoring.batch_job` reads, claims and hands each file to it, and holds
the Prefect task.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from functools import lru_cache
from typing import IO
from typing import Any
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lstm_model.bundle import ModelBundle
from lstm_model.memory import release_freed_memory
from lstm_model.precision import PrecisionChoice
from lstm_model.precision import choose_precision
from lstm_model.predict import Classifier
from lstm_model.predict import TextScores
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import resolve_device
from tasks.common.batch_hints import column_hints
from tasks.common.batch_hints import not_parquet_hint
from tasks.common.freeform import load_freeform
from tasks.registry.eval_rows import read_eval_rows
from tasks.registry.versions import load_bundle
from tasks.scoring.batch_writer import BatchWriter
from tasks.scoring.chunk_checks import REQUIRED
from tasks.scoring.chunk_checks import check_chunk
from tasks.scoring.claims import ClaimLost
from tasks.scoring.discovery import BatchFile
from tasks.scoring.discovery import LedgerRecord
from tasks.scoring.duplicate_ids import duplicate_rows
from tasks.scoring.outputs import BatchSummary
from tasks.scoring.outputs import confidence_counts
from tasks.scoring.outputs import confidence_edges
from tasks.scoring.outputs import misclassified_table
from tasks.scoring.outputs import predictions_table
from tasks.scoring.outputs import rejected_table
from tasks.scoring.outputs import review_table
from tasks.scoring.outputs import unreadable_table
from tasks.store.storage import Storage
from tasks.store.tables import MISCLASSIFIED
from tasks.store.tables import PREDICTIONS
from tasks.store.tables import REJECTED
from tasks.store.tables import REVIEW
from tasks.store.tables import SUMMARIES
from tasks.store.tables import UNREADABLE
from tasks.store.tables import parts_of


@dataclass(frozen=True, kw_only=True)
class ScoringSettings:
    """How batches are scored; built from the flow's ``ScoreConfig``, which owns the defaults."""

    max_comment_chars: int
    chunk_rows: int
    precision: str
    device: str
    inference_batch: int


ResultStatus = Literal["scored", "unreadable", "skipped"]


@dataclass(frozen=True)
class BatchResult:
    batch: str
    key: str | None  # None when the file was skipped before its content was known
    status: ResultStatus
    rows_in: int = 0
    rows_predicted: int = 0
    rows_rejected: int = 0
    reason: str | None = None  # why the batch is unreadable, or was skipped
    summary: BatchSummary | None = None  # None for an unreadable or skipped batch
    confidence_counts: tuple[int, ...] = ()  # predictions per bin of confidence_edges (run report)


class UnreadableBatch(Exception):
    pass


@dataclass(frozen=True)
class ScoringModel:
    """A loaded bundle, the classifier built from it, and the precision it runs in (and why)."""

    bundle: ModelBundle
    classifier: Classifier
    precision: PrecisionChoice

    def seen_tokens(self, comments: pa.Array) -> list[list[str]]:
        """Comments as the model reads them: vocabulary keys (stems), unknown words as ``[UNK]``."""
        vocab, max_len = self.classifier.vocab, self.classifier.max_len
        ids = vocab.encode_arrow(tokenize_arrow(comments)).to_pylist()
        return [vocab.decode(row[:max_len]) or ["[UNK]"] for row in ids]


_MODEL_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _scoring_model(
    storage: Storage, version: str, precision: str, device: str, batch_size: int
) -> ScoringModel:
    bundle = load_bundle(storage, version)
    check_texts = precision_check_texts(storage, version)

    def agreement_of(candidate: str) -> float:
        reference = Classifier.from_bundle(bundle, device=device, precision="fp32").score(check_texts)
        reduced = Classifier.from_bundle(bundle, device=device, precision=candidate).score(check_texts)
        return float(np.mean(reference.predicted == reduced.predicted))

    choice = choose_precision(precision, resolve_device(device), agreement_of)
    classifier = Classifier.from_bundle(
        bundle, device=device, precision=choice.precision, batch_size=batch_size
    )
    return ScoringModel(bundle, classifier, choice)


def precision_check_texts(storage: Storage, version: str) -> list[str]:
    """Comments a reduced precision must predict as fp32 does before it is used: the version's own
    evaluation rows when it has them (``eval.parquet``), and the hand-written free-form set."""
    sets = load_freeform()
    texts = [*sets.dev["comentario"], *sets.final["comentario"]]
    stored = read_eval_rows(storage, version, columns=["comentario"])
    if stored is not None:
        texts += stored["comentario"].tolist()
    return [t for t in texts if isinstance(t, str)]


def load_scoring_model(storage: Storage, version: str, settings: ScoringSettings) -> ScoringModel:
    """The model, loaded once per process (per worker) and reused for every batch it scores."""
    with _MODEL_LOCK:
        return _scoring_model(storage, version, settings.precision, settings.device, settings.inference_batch)


def is_decoding_error(exc: BaseException) -> bool:
    """True if Arrow itself could not make sense of the bytes (a property of the file, never retried).

    Arrow reports bad data as ``ArrowException`` subclasses, or as a bare ``OSError`` it creates
    itself ("Unexpected end of stream", "Corrupt snappy compressed data"). Storage errors reach us
    as the objects the file object raised: an ``OSError`` subclass, or one with an errno or a cause.
    """
    if isinstance(exc, pa.ArrowException):
        return True
    return type(exc) is OSError and exc.errno is None and exc.__cause__ is None and exc.__context__ is None


@contextmanager
def unreadable_on_bad_bytes(what: str) -> Iterator[None]:
    """Turn Arrow's complaints about the file's bytes into :class:`UnreadableBatch` ("<what>: <error>")."""
    try:
        yield
    except Exception as exc:
        if is_decoding_error(exc):
            raise UnreadableBatch(f"{what}: {exc}") from None
        raise


def open_parquet(handle: IO[bytes]) -> pq.ParquetFile:
    """The batch as a Parquet file with the required columns, or :class:`UnreadableBatch` saying why
    and what to do (:mod:`tasks.common.batch_hints`: a CSV or JSON file, a column named ``Comentario``)."""
    try:
        with unreadable_on_bad_bytes(
            "not a readable Parquet file"
        ):  # "magic bytes not found", "size is 0 bytes"
            parquet = pq.ParquetFile(handle)
    except UnreadableBatch as exc:
        handle.seek(0)
        name = str(getattr(handle, "name", None) or getattr(handle, "path", ""))
        hint = not_parquet_hint(name, handle.read(4096))
        if hint is None:
            raise
        raise UnreadableBatch(
            f"not a readable Parquet file: {hint} ({str(exc).split(': ', 1)[-1]})"
        ) from None
    names = parquet.schema_arrow.names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UnreadableBatch(f"duplicate column name(s): {', '.join(repeated)} (found: {', '.join(names)})")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        hints = "".join(f"; {hint}" for hint in column_hints(missing, names))
        raise UnreadableBatch(
            f"required column(s) missing: {', '.join(missing)} (found: {', '.join(names)}){hints}"
        )
    return parquet


@dataclass
class BatchTally:
    """Running counts of one batch, chunk by chunk, for its summary and the exactly-once check."""

    labels: tuple[str, ...]
    rows_in: int = 0
    predicted: int = 0
    rejected: int = 0
    labelled: int = 0
    misclassified: int = 0
    flagged: int = 0
    tokens: int = 0
    unknown_tokens: int = 0
    confidence_sum: float = 0.0
    class_counts: Counter[str] = field(default_factory=Counter)
    confidence_bins: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.confidence_bins = np.zeros(len(confidence_edges(len(self.labels))) - 1, dtype=np.int64)

    def add_chunk(self, rows_in: int, rejected: int, scores: TextScores, preds: pa.Table) -> None:
        self.rows_in += rows_in
        self.predicted += preds.num_rows
        self.rejected += rejected
        self.tokens += scores.token_count
        self.unknown_tokens += scores.unknown_count
        self.confidence_sum += float(scores.probs.max(axis=1).sum()) if len(scores.probs) else 0.0
        self.flagged += int(scores.needs_review.sum())
        self.confidence_bins += confidence_counts(preds["confianza"], confidence_edges(len(self.labels)))
        for item in pc.value_counts(preds["categoria_pred"]).to_pylist():
            if item["values"] is not None:  # rows with no readable word get no class
                self.class_counts[item["values"]] += item["counts"]

    def add_labelled(self, labelled: int, misclassified: int) -> None:
        self.labelled += labelled
        self.misclassified += misclassified

    def check_every_row_accounted_for(self, batch: BatchFile) -> None:
        if (
            self.rows_in != self.predicted + self.rejected
        ):  # the exactly-once invariant; never expected to trip
            raise RuntimeError(
                f"{batch.name}: {self.rows_in} rows in but {self.predicted} predicted + {self.rejected} rejected"
            )

    def summary(self, batch: BatchFile, model: ScoringModel, seconds: float, when: datetime) -> BatchSummary:
        def share(part: float, whole: int) -> float | None:
            return part / whole if whole else None

        return BatchSummary(
            batch=batch.name,
            batch_key=batch.key,
            model_version=model.bundle.version,
            rows_in=self.rows_in,
            rows_predicted=self.predicted,
            rows_rejected=self.rejected,
            class_counts=tuple((label, self.class_counts.get(label, 0)) for label in self.labels),
            mean_confianza=share(self.confidence_sum, self.predicted),
            unknown_token_share=share(self.unknown_tokens, self.tokens),
            training_unknown_token_share=model.bundle.training.val_unknown_share,
            labelled_rows=self.labelled,
            accuracy=share(self.labelled - self.misclassified, self.labelled),
            misclassified_rows=self.misclassified,
            rows_flagged=self.flagged,
            seconds=seconds,
            scored_at=when,
        )


def remove_outputs(storage: Storage, key: str, check: Callable[[], None] | None = None) -> None:
    """Delete every output file of batch ``key`` (all tables, all days), leftovers of killed writes too;
    ``check`` (the claim's) before each delete."""
    for leftover in parts_of(storage, key):
        if check is not None:
            check()
        storage.delete(leftover)


def _no_claim() -> None:
    return None


def _read_chunks(parquet: pq.ParquetFile, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """The file's record batches; a page Arrow cannot decode makes the batch unreadable (never retried)."""
    chunks = parquet.iter_batches(batch_size=chunk_rows)
    rows = 0
    while True:
        with unreadable_on_bad_bytes(f"cannot be read after row {rows:,}"):
            chunk = next(chunks, None)
        if chunk is None:
            return
        rows += chunk.num_rows
        yield chunk


@dataclass(frozen=True)
class BatchRun:
    """One scoring of one batch: what each of its steps shares (the batch, the model version, the
    settings, the run's timestamp, the writer that fences every write by the claim, and the log)."""

    batch: BatchFile
    version: str
    settings: ScoringSettings
    when: datetime
    writer: BatchWriter
    log: Callable[[str], None]


def score_file(
    storage: Storage,
    batch: BatchFile,
    version: str,
    settings: ScoringSettings,
    log=None,
    *,
    check: Callable[[], None] = _no_claim,
    fence: str | None = None,
    ledger_fields: dict[str, Any] | None = None,
) -> BatchResult:
    """Score one batch: check what can fail cheaply, clear old outputs, stream chunks through rules and
    model writing parts, then commit the ledger entry.

    ``check`` raises when this run may no longer write the batch (its claim was lost); ``fence`` is
    the claim's fence, in every part's name. Both go to a :class:`BatchWriter`, which checks the
    claim before every publish and every delete. ``ledger_fields`` are extra fields of the ledger
    record. The file is read through :meth:`Storage.open_version`, so only the bytes of
    ``batch.version`` (the bytes that were hashed into ``batch.key``) are ever scored.
    """
    log = log or (lambda *a: None)
    started = time.perf_counter()
    writer = BatchWriter(storage, batch.key, fence=fence, check=check, log=log)
    run = BatchRun(batch, version, settings, datetime.now(UTC), writer, log)
    check()
    try:
        with storage.open_version(batch.uri, batch.version) as handle:
            # What can fail without scoring a row comes first (the file's schema, its ids, the
            # model): a --rescore that fails here leaves the committed outputs as they were.
            parquet = open_parquet(handle)
            with unreadable_on_bad_bytes("its id column cannot be read"):
                duplicates = duplicate_rows(parquet, settings.chunk_rows)
            model = load_scoring_model(storage, version, settings)
            choice = model.precision
            log(
                f"{batch.name}: model {version} on {model.classifier.device} in {choice.precision} ({choice.reason})"
            )
            # Un-commit (the ledger entry exists here only with --rescore), then remove what an
            # earlier or interrupted run wrote for this batch.
            writer.clear()
            tally = _score_chunks(run, parquet, duplicates, model)
    except UnreadableBatch as exc:
        return _commit_unreadable(run, str(exc), ledger_fields or {})
    except ClaimLost as lost:
        log(f"{batch.name}: stopped, deleting nothing: {lost}")
        raise  # the batch is another run's now: its files must not be touched
    except BaseException as exc:
        # A batch that fails half-way must not leave rows in the tables (analysts read them without
        # looking at the ledger): remove its own parts (if it still holds the claim), then let
        # Prefect retry or report the failure.
        writer.discard(f"{type(exc).__name__}: {exc}")
        raise
    return _commit_scored(run, tally, model, time.perf_counter() - started, ledger_fields or {})


def _commit_unreadable(run: BatchRun, reason: str, extra: dict[str, Any]) -> BatchResult:
    """An unreadable batch: nothing of it in the tables but its row in ``errors/unreadable``, committed."""
    run.writer.discard("unreadable")  # whatever chunks came before the unreadable page
    run.writer.clear()
    run.writer.write(UNREADABLE, run.when, 0, unreadable_table(run.batch, reason, run.when))
    run.writer.commit(LedgerRecord.for_batch(run.batch, "unreadable", run.when, reason=reason, **extra))
    return BatchResult(run.batch.name, run.batch.key, "unreadable", reason=reason)


def _commit_scored(
    run: BatchRun, tally: BatchTally, model: ScoringModel, seconds: float, extra: dict[str, Any]
) -> BatchResult:
    """The batch's summary row, the every-row-accounted-for check, then the ledger entry (the commit)."""
    summary = tally.summary(run.batch, model, seconds, run.when)
    run.writer.write(SUMMARIES, run.when, 0, summary.to_table())
    tally.check_every_row_accounted_for(run.batch)
    run.writer.commit(
        LedgerRecord.for_batch(
            run.batch,
            "scored",
            run.when,
            model_version=run.version,
            rows_in=tally.rows_in,
            rows_predicted=tally.predicted,
            rows_rejected=tally.rejected,
            **extra,
        ),
    )
    return BatchResult(
        run.batch.name,
        run.batch.key,
        "scored",
        tally.rows_in,
        tally.predicted,
        tally.rejected,
        summary=summary,
        confidence_counts=tuple(tally.confidence_bins.tolist()),
    )


def _score_chunks(
    run: BatchRun, parquet: pq.ParquetFile, duplicates: set[int], model: ScoringModel
) -> BatchTally:
    """Every chunk through the row rules and the model, its parts written as it goes."""
    labelled_batch = "categoria" in parquet.schema_arrow.names
    tally = BatchTally(model.classifier.labels)
    for part, chunk in enumerate(_read_chunks(parquet, run.settings.chunk_rows)):
        _score_chunk(run, part, chunk, duplicates, model, tally, labelled_batch)
        release_freed_memory()
        run.log(
            f"{run.batch.name}: part {part}: {tally.rows_in:,} rows read, {tally.predicted:,} predicted, "
            f"{tally.rejected:,} rejected"
        )
    return tally


def _score_chunk(
    run: BatchRun,
    part: int,
    chunk: pa.RecordBatch,
    duplicates: set[int],
    model: ScoringModel,
    tally: BatchTally,
    labelled_batch: bool,
) -> None:
    """One chunk: row rules, predictions, and its part of each table (review, rejected, misclassified)."""
    labels, writer, when = model.classifier.labels, run.writer, run.when
    with unreadable_on_bad_bytes("its columns cannot be read as a batch"):  # values Arrow cannot type
        checked = check_chunk(
            pa.Table.from_batches([chunk]), tally.rows_in, duplicates, run.settings.max_comment_chars
        )
    valid = checked.valid
    scores = model.classifier.score(valid["comentario"])
    preds = predictions_table(valid, scores, labels, run.version, run.batch, when)
    writer.write(PREDICTIONS, when, part, preds)
    if scores.needs_review.any():
        writer.write(REVIEW, when, part, review_table(preds, labels))
    if checked.rejected.num_rows:
        writer.write(REJECTED, when, part, rejected_table(checked.rejected, run.batch, when))
    if labelled_batch and valid.num_rows:
        wrong = misclassified_table(valid, preds, model.seen_tokens)
        tally.add_labelled(int(pc.sum(pc.is_valid(valid["categoria"])).as_py() or 0), wrong.num_rows)
        if wrong.num_rows:
            writer.write(MISCLASSIFIED, when, part, wrong)
    tally.add_chunk(chunk.num_rows, checked.rejected.num_rows, scores, preds)
