"""Scoring one batch file end to end, in bounded memory, exactly once."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from lstm_model.predict import Classifier
from lstm_model.tokenizer import tokenize_arrow
from tasks.batches import BatchFile, ledger_path, record, write_ledger
from tasks.outputs import (
    MISCLASSIFIED, MISCLASSIFIED_SCHEMA, PREDICTIONS, REJECTED, REJECTED_SCHEMA, SUMMARIES, SUMMARY_SCHEMA,
    UNREADABLE, UNREADABLE_SCHEMA, parts_of, predictions_schema, write_part,
)
from tasks.registry import load_bundle
from tasks.scoring_rows import REQUIRED, prepare_chunk
from tasks.storage import Storage
from tasks.validation import ROW, Check, Rule, failing_rows


@dataclass(frozen=True)
class ScoringSettings:
    max_comment_chars: int = 5_000
    chunk_rows: int = 65_536
    precision: str = "fp32"
    device: str = "cpu"
    inference_batch: int = 1_024


@dataclass
class BatchResult:
    batch: str
    key: str
    status: str  # scored | unreadable
    rows_in: int = 0
    rows_predicted: int = 0
    rows_rejected: int = 0
    reason: str | None = None
    summary: dict = field(default_factory=dict)


class UnreadableBatch(Exception):
    pass


@lru_cache(maxsize=1)
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``) between chunks.

    Without it, glibc's per-thread arenas (torch, Arrow and GX allocate from several threads) keep
    fragments of every chunk and RSS creeps up with the number of chunks, i.e. with the file size.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


_CLASSIFIER_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _classifier(storage: Storage, version: str, precision: str, device: str, batch_size: int) -> Classifier:
    return Classifier(load_bundle(storage, version), device=device, precision=precision, batch_size=batch_size)


def load_classifier(storage: Storage, version: str, settings: ScoringSettings) -> Classifier:
    """The model, loaded once per process (per worker) and reused for every batch it scores."""
    with _CLASSIFIER_LOCK:
        return _classifier(storage, version, settings.precision, settings.device, settings.inference_batch)


def open_parquet(batch: BatchFile) -> pq.ParquetFile:
    """The batch as a Parquet file with the required columns, or :class:`UnreadableBatch` saying why."""
    handle = batch.open()  # I/O errors (missing file, S3 outage) propagate: Prefect retries, no verdict
    try:
        parquet = pq.ParquetFile(handle)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:  # "magic bytes not found", "size is 0 bytes"
        raise UnreadableBatch(f"not a readable Parquet file: {exc}") from None
    missing = [c for c in REQUIRED if c not in parquet.schema_arrow.names]
    if missing:
        raise UnreadableBatch(f"required column(s) missing: {', '.join(missing)} (found: {', '.join(parquet.schema_arrow.names)})")
    return parquet


def _id_text(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    try:
        return pc.cast(ids, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else str(v) for v in ids.to_pylist()], pa.string())


def _id_chunks(parquet: pq.ParquetFile, chunk_rows: int):
    first = 0
    for chunk in parquet.iter_batches(batch_size=chunk_rows, columns=["id"]):
        yield first, _id_text(chunk.column(0))
        first += chunk.num_rows


def duplicate_rows(parquet: pq.ParquetFile, chunk_rows: int = 65_536) -> set[int]:
    """Positions of rows whose id appears more than once anywhere in the file.

    Memory does not grow with the file: the ``id`` column is streamed, each id is reduced to a
    64-bit hash, and the hashes are checked for uniqueness by GX one hash bucket at a time, with as
    many buckets (passes over the id column) as it takes to keep each near ``4 * chunk_rows`` rows.
    Equal ids always share a bucket. A hash collision could only add candidates, so candidates are
    then checked against their real ids in one more streamed pass: the result is exact.
    """
    buckets = max(1, math.ceil(parquet.metadata.num_rows / (4 * chunk_rows)))
    rule = Rule("id_duplicate", "id_hash", (Check("ExpectColumnValuesToBeUnique"),), str)
    candidates: set[int] = set()
    for bucket in range(buckets):
        hashes, rows = [], []
        for first, ids in _id_chunks(parquet, chunk_rows):
            present = np.flatnonzero(ids.is_valid().to_numpy(zero_copy_only=False))  # null ids are id_missing
            hashed = pd.util.hash_array(ids.take(pa.array(present)).to_numpy(zero_copy_only=False), categorize=False)
            mine = hashed % np.uint64(buckets) == bucket
            hashes.append(hashed[mine])
            rows.append(present[mine] + first)
        view = pd.DataFrame({"id_hash": np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
                             ROW: np.concatenate(rows) if rows else np.zeros(0, np.int64)})
        candidates |= failing_rows(view, [rule])["id_duplicate"]
    if not candidates:
        return set()
    wanted = np.array(sorted(candidates), dtype=np.int64)
    seen: dict[str, list[int]] = {}
    for first, ids in _id_chunks(parquet, chunk_rows):
        local = wanted[(wanted >= first) & (wanted < first + len(ids))] - first
        for row, value in zip(local.tolist(), ids.take(pa.array(local)).to_pylist()):
            seen.setdefault(value, []).append(first + row)
    return {row for positions in seen.values() if len(positions) > 1 for row in positions}


def _predictions(valid: pa.Table, probs: np.ndarray, labels: tuple[str, ...], version: str, batch: BatchFile, when: datetime) -> pa.Table:
    best = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    n = valid.num_rows
    columns = {name: valid[name] for name in valid.column_names if name != "row_number"}
    columns["categoria_pred"] = pa.array(np.asarray(labels, dtype=object)[best], pa.string()) if n else pa.array([], pa.string())
    columns["confianza"] = pa.array(probs.max(axis=1) if n else np.zeros(0, np.float32), pa.float32())
    for i, label in enumerate(labels):
        columns[f"prob_{label}"] = pa.array(probs[:, i] if n else np.zeros(0, np.float32), pa.float32())
    columns["model_version"] = pa.array([version] * n, pa.string())
    columns["batch"] = pa.array([batch.name] * n, pa.string())
    columns["batch_key"] = pa.array([batch.key] * n, pa.string())
    columns["row_number"] = valid["row_number"]
    columns["scored_at"] = pa.array([when] * n, pa.timestamp("us", tz="UTC"))
    return pa.table(columns, schema=predictions_schema(labels))


def _misclassified(valid: pa.Table, preds: pa.Table, classifier: Classifier, batch: BatchFile, when: datetime) -> pa.Table:
    truth = valid["categoria"]
    wrong = pc.and_(pc.is_valid(truth), pc.not_equal(truth, preds["categoria_pred"]))
    wrong = pc.fill_null(wrong, False)
    picked = np.flatnonzero(wrong.to_numpy(zero_copy_only=False))
    vocab, max_len = classifier.bundle.vocab, classifier.bundle.max_len
    take = pa.array(picked, pa.int64())
    tokens = tokenize_arrow(valid["comentario"].take(take))
    seen = [vocab.decode(ids[:max_len]) or ["[UNK]"] for ids in vocab.encode_arrow(tokens).to_pylist()] if len(picked) else []
    return pa.table({
        "id": valid["id"].take(take),
        "comentario": valid["comentario"].take(take),
        "tokens": pa.array(seen, pa.list_(pa.string())),
        "categoria": truth.take(take),
        "categoria_pred": preds["categoria_pred"].take(take),
        "confianza": preds["confianza"].take(take),
        "model_version": preds["model_version"].take(take),
        "batch": preds["batch"].take(take),
        "batch_key": preds["batch_key"].take(take),
        "row_number": valid["row_number"].take(take),
        "scored_at": preds["scored_at"].take(take),
    }, schema=MISCLASSIFIED_SCHEMA)


def _with_batch_fields(rejected: pa.Table, batch: BatchFile, when: datetime) -> pa.Table:
    n = rejected.num_rows
    columns = {name: rejected[name] for name in rejected.column_names}
    columns["batch"] = pa.array([batch.name] * n, pa.string())
    columns["batch_key"] = pa.array([batch.key] * n, pa.string())
    columns["rejected_at"] = pa.array([when] * n, pa.timestamp("us", tz="UTC"))
    return pa.table({name: columns[name] for name in REJECTED_SCHEMA.names}, schema=REJECTED_SCHEMA)


def score_file(storage: Storage, batch: BatchFile, version: str, settings: ScoringSettings, log=None) -> BatchResult:
    """Score one batch: clear leftovers, stream chunks through rules and model, write parts, then the ledger."""
    log = log or (lambda *a: None)
    started = time.perf_counter()
    when = datetime.now(timezone.utc)
    # Un-commit first (the ledger entry is the commit point; it exists here only with --rescore), then
    # remove whatever an earlier or interrupted run wrote for this batch.
    storage.delete(ledger_path(batch.key))
    for leftover in parts_of(storage, batch.key):
        storage.delete(leftover)
    try:
        parquet = open_parquet(batch)
        duplicates = duplicate_rows(parquet, settings.chunk_rows)
    except UnreadableBatch as exc:
        reason = str(exc)
        write_part(storage, UNREADABLE, when, batch.key, 0, pa.table({
            "path": [batch.uri], "batch": [batch.name], "batch_key": [batch.key], "size_bytes": [batch.size],
            "reason": [reason], "detected_at": [when],
        }, schema=UNREADABLE_SCHEMA))
        write_ledger(storage, batch.key, record(batch, status="unreadable", reason=reason, finished_at=when.isoformat()))
        return BatchResult(batch.name, batch.key, "unreadable", reason=reason)

    classifier = load_classifier(storage, version, settings)
    labels = classifier.labels
    counts: Counter[str] = Counter()
    rows_in = predicted = rejected_n = labelled = correct = wrong_n = unknown = tokens_total = 0
    confidence_sum = 0.0
    part = 0
    try:
        chunks = enumerate(parquet.iter_batches(batch_size=settings.chunk_rows))
        for part, chunk in chunks:
            table = pa.Table.from_batches([chunk])
            prepared = prepare_chunk(table, rows_in, duplicates, settings.max_comment_chars)
            rows_in += table.num_rows
            valid = prepared.valid
            scores = classifier.score(valid["comentario"])
            probs = scores.probs
            unknown += scores.unknown_count
            tokens_total += scores.token_count
            preds = _predictions(valid, probs, labels, version, batch, when)
            write_part(storage, PREDICTIONS, when, batch.key, part, preds)
            if prepared.rejected.num_rows:
                write_part(storage, REJECTED, when, batch.key, part, _with_batch_fields(prepared.rejected, batch, when))
            if "categoria" in parquet.schema_arrow.names and valid.num_rows:
                wrong = _misclassified(valid, preds, classifier, batch, when)
                labelled += int(pc.sum(pc.is_valid(valid["categoria"])).as_py() or 0)
                wrong_n += wrong.num_rows
                if wrong.num_rows:
                    write_part(storage, MISCLASSIFIED, when, batch.key, part, wrong)
            predicted += valid.num_rows
            rejected_n += prepared.rejected.num_rows
            counts.update(dict(zip(*np.unique(preds["categoria_pred"].to_numpy(zero_copy_only=False), return_counts=True))) if valid.num_rows else {})
            confidence_sum += float(probs.max(axis=1).sum()) if len(probs) else 0.0
            release_freed_memory()
            log(f"{batch.name}: part {part}: {rows_in:,} rows read, {predicted:,} predicted, {rejected_n:,} rejected")
    except BaseException:
        # A batch that fails half-way must not leave rows in the tables (analysts read them without
        # looking at the ledger): remove its parts, then let Prefect retry or report the failure.
        for leftover in parts_of(storage, batch.key):
            storage.delete(leftover)
        raise
    correct = labelled - wrong_n
    seconds = time.perf_counter() - started
    summary = {
        "batch": batch.name, "batch_key": batch.key, "model_version": version,
        "rows_in": rows_in, "rows_predicted": predicted, "rows_rejected": rejected_n,
        "class_counts": [(label, int(counts.get(label, 0))) for label in labels],
        "mean_confianza": confidence_sum / predicted if predicted else None,
        "unknown_token_share": unknown / tokens_total if tokens_total else None,
        "training_unknown_token_share": classifier.bundle.training.get("val_unknown_share"),
        "labelled_rows": labelled, "accuracy": correct / labelled if labelled else None,
        "misclassified_rows": wrong_n, "seconds": seconds, "scored_at": when,
    }
    write_part(storage, SUMMARIES, when, batch.key, 0, pa.Table.from_pylist([summary], schema=SUMMARY_SCHEMA))
    if rows_in != predicted + rejected_n:  # the exactly-once invariant; never expected to trip
        raise RuntimeError(f"{batch.name}: {rows_in} rows in but {predicted} predicted + {rejected_n} rejected")
    write_ledger(storage, batch.key, record(batch, status="scored", model_version=version, rows_in=rows_in,
                                            rows_predicted=predicted, rows_rejected=rejected_n, finished_at=when.isoformat()))
    return BatchResult(batch.name, batch.key, "scored", rows_in, predicted, rejected_n, summary=summary)


@task(name="score-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30], task_run_name="score-{batch.name}")
def score_batch(storage: Storage, batch: BatchFile, version: str, settings: ScoringSettings) -> BatchResult:
    """Prefect task around :func:`score_file`; a retry starts the batch over (leftovers are removed first)."""
    logger = get_run_logger()
    result = score_file(storage, batch, version, settings, log=logger.info)
    if result.status == "unreadable":
        logger.error("Unreadable batch %s: %s (file left in place)", batch.uri, result.reason)
    else:
        logger.info("Scored %s: %d rows in, %d predicted, %d rejected", batch.name, result.rows_in, result.rows_predicted, result.rows_rejected)
    return result
