"""Finding incoming batches and remembering which ones were scored (the ledger).

A batch is one Parquet file. It is identified by the SHA-256 of its content, not by its name, so a
file copied in twice, or renamed, is still scored once; a file whose content changed is new. Its
name in every output (the ``batch`` column) is its path relative to the input root
(``day1/batch.parquet``), so files of the same name in different folders stay apart.

The ledger is one small JSON object per batch key under ``<storage>/ledger/``. It is written after
all of the batch's output files, create-only, naming the parts it commits (:mod:`tasks.scoring.batch_writer`),
so it is the commit point: a batch without a ledger entry was not
(completely) scored and will be scored again, after removing whatever a killed run left behind.
One object per key (instead of one shared file) means parallel workers never overwrite each other's
records, on a disk or on S3. A batch whose file was re-delivered with new content is *superseded*:
its record moves to ``ledger/superseded/`` (naming its successor) and its rows leave the tables.

Discovery reads nothing it does not have to: a file whose location, size and version (ETag on S3;
inode, mtime and ctime locally) match its entry in the path index (:mod:`tasks.scoring.path_index`) was
scored already and is skipped without being opened. Only new or changed files are read, by the
task that scores them (:mod:`tasks.scoring.batch_job`). Files that writers leave behind are skipped with a
reason (:func:`leftover_reason`); every other file is scored or reported unreadable.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from dataclasses import fields
from datetime import datetime
from typing import IO
from typing import Any
from typing import Literal

import fsspec
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common.retries import retry_if_transient
from tasks.scoring.path_index import PathRecord
from tasks.scoring.path_index import location_of
from tasks.scoring.path_index import read_index
from tasks.store.folders import incoming_uri
from tasks.store.ledger import ledger_record
from tasks.store.ledger import ledger_records
from tasks.store.ledger import superseded_record
from tasks.store.storage import FileVersion
from tasks.store.storage import Storage

BatchStatus = Literal["scored", "unreadable"]


@dataclass(frozen=True)
class BatchFile:
    uri: str  # full URI of the file, for logs and reports
    name: str  # path relative to the input root: the ``batch`` column of every output
    key: str  # SHA-256 of the content
    size: int
    version: FileVersion | None = None  # the version hashed; scoring reads exactly these bytes


@dataclass(frozen=True)
class InputFile:
    """A file found under the input that has to be read: new, changed, or listed again with --rescore."""

    uri: str
    name: str  # path relative to the input root
    location: str  # its key in the path index (see :func:`tasks.scoring.path_index.location_of`)
    version: FileVersion

    def batch(self, key: str) -> BatchFile:
        return BatchFile(self.uri, self.name, key, self.version.size, self.version)


@dataclass(frozen=True)
class Discovery:
    """What :func:`find_batches` found: files to read, and every file it skipped with the reason."""

    files: list[InputFile]
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why (leftover, too young)
    known: dict[str, str] = field(default_factory=dict)  # name -> what the index knows (scored...)


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
    location: str | None = None  # the file's key in the path index
    run_id: str | None = None  # the flow run that scored it
    supersedes: str | None = None  # key of the earlier content of the same file, whose rows it replaced
    superseded_by: str | None = None  # set when the record moves to ledger/superseded/
    superseded_at: str | None = None
    token: str | None = None  # the version of the file that was scored (FileVersion.token)
    # Fencing (tasks.scoring.batch_writer): the claim fence of the run that committed the batch and the
    # parts (paths under the storage root) it committed. Any other part of the batch is not committed
    # and is removed once its writer's lease is over (tasks.scoring.reconcile). None in entries written
    # without a claim or before fences: then the parts without a fence in their name are committed.
    fence: str | None = None
    parts: list[str] | None = None

    @classmethod
    def for_batch(
        cls, batch: BatchFile, status: BatchStatus, finished_at: datetime, **counts: Any
    ) -> LedgerRecord:
        token = batch.version.token if batch.version is not None else None
        return cls(
            batch.uri,
            batch.name,
            batch.key,
            batch.size,
            status,
            finished_at.isoformat(),
            token=token,
            **counts,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LedgerRecord:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in {f.name for f in fields(cls)}})


def content_key(fs: fsspec.AbstractFileSystem, path: str) -> str:
    with fs.open(path, "rb") as handle:
        return sha256_of(handle)


def sha256_of(handle: IO[bytes], block: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(block):
        digest.update(chunk)
    return digest.hexdigest()


def leftover_reason(name: str) -> str | None:
    """Why ``name`` (relative to the input root) is something a writer leaves behind, or None.

    Only these are skipped: hidden names (``.part.tmp``, ``.x.crc``), Spark/Hadoop's
    ``_temporary/`` folders of unfinished jobs, ``_SUCCESS`` markers, Databricks'
    ``_committed_*``/``_started_*`` markers and ``*.crc`` checksums. Anything else, an
    ``_archive/late.parquet`` or a ``_customer_batch.parquet`` included, is a batch.
    """
    *folders, base = name.split("/")
    hidden = next((part for part in (*folders, base) if part.startswith(".")), None)
    if hidden is not None:
        return f"hidden name {hidden}: a writer's temporary or private file"
    if "_temporary" in folders:
        return "_temporary/: files of a job that has not finished"
    if base == "_SUCCESS":
        return "_SUCCESS: a job's completion marker"
    if base.startswith(("_committed_", "_started_")):
        return "a transactional commit marker"
    if base.endswith(".crc"):
        return "a checksum file"
    return None


def list_input_files(storage: Storage, input_uri: str) -> tuple[str, dict[str, FileVersion], dict[str, str]]:
    """Files under a folder (recursively) or matching a glob, with their versions: ``(root, files,
    leftovers)``. ``leftovers`` maps the paths skipped as writers' leftovers to the reason.

    Every other file is returned, ``.parquet`` or not: a stray CSV is reported as unreadable rather
    than ignored without a word.
    """
    root, found = storage.list_files(input_uri)
    files: dict[str, FileVersion] = {}
    leftovers: dict[str, str] = {}
    for path, version in found.items():
        reason = leftover_reason(posixpath.relpath(path, root))
        if reason is None:
            files[path] = version
        else:
            leftovers[path] = reason
    return root, files, leftovers


def _read_record(storage: Storage, rel: str) -> LedgerRecord | None:
    try:
        return LedgerRecord.from_json(storage.read_text(rel))
    except FileNotFoundError:
        return None


def read_ledger(storage: Storage, key: str) -> LedgerRecord | None:
    """The batch's ledger record, None when it was never committed (or was superseded)."""
    return _read_record(storage, ledger_record(key))


def read_superseded(storage: Storage, key: str) -> LedgerRecord | None:
    """The record of the batch's superseded output, None when it was never superseded."""
    return _read_record(storage, superseded_record(key))


def write_ledger(storage: Storage, record: LedgerRecord) -> None:
    storage.write_text(ledger_record(record.key), record.to_json())


def supersede(storage: Storage, record: LedgerRecord, successor: str, when: datetime) -> None:
    """Un-commit ``record``'s batch, keeping the record under ``ledger/superseded/`` with its successor.

    The copy is written first, so a crash in between leaves the batch committed and the
    supersession is simply done again by the next run.
    """
    moved = LedgerRecord(**{**asdict(record), "superseded_by": successor, "superseded_at": when.isoformat()})
    storage.write_text(superseded_record(record.key), moved.to_json())
    storage.delete(ledger_record(record.key))


def scored_keys(storage: Storage) -> set[str]:
    return set(ledger_records(storage))


def _describe(record: PathRecord) -> str:
    if record.status == "unreadable":
        return f"reported unreadable on {record.recorded_at} ({record.reason}); fix or remove it, or pass --rescore"
    if record.status == "duplicate":
        return f"same content as {record.duplicate_of}, already scored"
    return f"already scored (content {record.key[:12]})"


@task(
    name="find-batches",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
)
def find_batches(storage: Storage, input_uri: str | None, rescore: bool, min_file_age: float) -> Discovery:
    """Files to read: everything under the input except writers' leftovers, files younger than
    ``min_file_age`` seconds, and (unless ``rescore``) files unchanged since they were scored.

    Unchanged files are recognised from the listing alone (path index + ledger keys): nothing of
    them is read. Every skipped file is logged with the reason.
    """
    logger = get_run_logger()
    source = input_uri or incoming_uri(storage)
    root, found, leftovers = list_input_files(storage, source)
    now = time.time()
    committed = set() if rescore else scored_keys(storage)
    uris = {path: storage.uri_of(source, path) for path in found}
    locations = {path: location_of(storage, uri) for path, uri in uris.items()}
    index = {} if rescore else read_index(storage, locations.values())
    result = Discovery(files=[])
    for path, reason in leftovers.items():
        result.skipped[posixpath.relpath(path, root)] = f"writer's leftover ({reason})"
    for path, version in found.items():
        name = posixpath.relpath(path, root)
        age = now - version.mtime
        known = index.get(locations[path])
        if age < min_file_age:
            result.skipped[name] = (
                f"waits for the next run: modified {max(age, 0):.1f} s ago, "
                f"younger than --min-file-age {min_file_age:g} s (may still be written)"
            )
        elif known is not None and known.matches(version) and known.key in committed:
            result.known[name] = _describe(known)
        else:
            result.files.append(InputFile(uris[path], name, locations[path], version))
    for name, why in sorted({**result.skipped, **result.known}.items()):
        level = logger.warning if "unreadable" in why else logger.info
        level("Skipping %s: %s", name, why)
    logger.info(
        "%d file(s) under %s: %d to read (new or changed), %d unchanged since scored, %d skipped",
        len(found) + len(leftovers),
        source,
        len(result.files),
        len(result.known),
        len(result.skipped),
    )
    return result
