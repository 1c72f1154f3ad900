"""Finding incoming batches and remembering which ones were scored (the ledger).

A batch is one Parquet file. It is identified by the SHA-256 of its content, not by its name, so a
file copied in twice, or renamed, is still scored once; a file whose content changed is new.

The ledger is one small JSON object per batch key under ``<storage>/ledger/``. It is written after
all of the batch's output files, so it is the commit point: a batch without a ledger entry was not
(completely) scored and will be scored again, after removing whatever a killed run left behind.
One object per key (instead of one shared file) means parallel workers never overwrite each other's
records, on a disk or on S3.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from datetime import datetime
from typing import Any
from typing import Literal

import fsspec
from fsspec.implementations.local import LocalFileSystem
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.storage import Storage

LEDGER = "ledger"
INCOMING = "incoming"
_GLOB_CHARS = set("*?[")


BatchStatus = Literal["scored", "unreadable"]


@dataclass(frozen=True)
class BatchFile:
    uri: str  # full URI of the file, for logs and reports
    name: str  # file name: the ``batch`` column of every output
    key: str  # SHA-256 of the content
    size: int


@dataclass(frozen=True)
class LedgerRecord:
    """What the ledger remembers of one batch key (``ledger/<key>.json``)."""

    uri: str
    name: str
    key: str
    size: int
    status: BatchStatus
    finished_at: str
    reason: str | None = None  # why it is unreadable
    model_version: str | None = None
    rows_in: int | None = None
    rows_predicted: int | None = None
    rows_rejected: int | None = None

    @classmethod
    def for_batch(
        cls, batch: BatchFile, status: BatchStatus, finished_at: datetime, **counts: Any
    ) -> LedgerRecord:
        return cls(batch.uri, batch.name, batch.key, batch.size, status, finished_at.isoformat(), **counts)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LedgerRecord:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in {f.name for f in fields(cls)}})


def content_key(fs: fsspec.AbstractFileSystem, path: str, block: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def list_input_files(storage: Storage, input_uri: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """Files under a folder (recursively) or matching a glob; hidden names (a file or folder below the
    root starting with ``.`` or ``_``, like Spark's ``_temporary/``) are skipped.

    Every other file is returned, ``.parquet`` or not: a stray CSV is reported as unreadable rather
    than ignored without a word.
    """
    fs, path = storage.filesystem_for(input_uri)
    if _GLOB_CHARS & set(path):
        paths = fs.glob(path)
    elif fs.isdir(path):
        paths = fs.find(path)
    elif fs.exists(path):
        paths = [path]
    else:
        paths = []
    root = path if not (_GLOB_CHARS & set(path)) and fs.isdir(path) else posixpath.dirname(path.split("*")[0])

    def hidden(p: str) -> bool:  # any part below the root: ".tmp", "_temporary/0/part-0" (Spark mid-write)
        return any(part.startswith((".", "_")) for part in posixpath.relpath(p, root).split("/"))

    files = [p for p in paths if not hidden(p) and fs.isfile(p)]
    return fs, sorted(files)


def ledger_path(key: str) -> str:
    return f"{LEDGER}/{key}.json"


def read_ledger(storage: Storage, key: str) -> LedgerRecord | None:
    rel = ledger_path(key)
    return LedgerRecord.from_json(storage.read_text(rel)) if storage.exists(rel) else None


def write_ledger(storage: Storage, record: LedgerRecord) -> None:
    storage.write_text(ledger_path(record.key), record.to_json())


def scored_keys(storage: Storage) -> set[str]:
    return {posixpath.basename(p)[: -len(".json")] for p in storage.glob(f"{LEDGER}/*.json")}


@task(name="find-batches", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def find_batches(storage: Storage, input_uri: str | None, rescore: bool) -> list[BatchFile]:
    """New batches to score: files not yet in the ledger (all of them with ``rescore``), one per content."""
    logger = get_run_logger()
    source = input_uri or storage.uri(INCOMING)
    fs, paths = list_input_files(storage, source)
    done = set() if rescore else scored_keys(storage)
    batches: dict[str, BatchFile] = {}
    for path in paths:
        key = content_key(fs, path)
        uri = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
        if key in done:
            previous = read_ledger(storage, key)
            if previous is not None and previous.status == "unreadable":
                logger.warning(
                    "Skipping %s: reported unreadable on %s (%s); fix or remove it, or pass --rescore",
                    uri,
                    previous.finished_at,
                    previous.reason,
                )
            else:
                logger.info("Skipping %s: already scored (content %s)", uri, key[:12])
        elif key in batches:
            logger.warning("Skipping %s: same content as %s", uri, batches[key].uri)
        else:
            batches[key] = BatchFile(uri, posixpath.basename(path), key, fs.size(path))
    logger.info("%d file(s) under %s, %d batch(es) to score", len(paths), source, len(batches))
    return list(batches.values())
