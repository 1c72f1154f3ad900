"""One input file, from the listing to the ledger: read it, claim it, replace what it replaces, score it.

The order is what makes scoring exactly-once with other runs about, late writers and re-deliveries:

1. **Hash what is read.** The file is opened at the version the listing saw
   (:meth:`Storage.open_version`) and hashed; the key is the SHA-256 of those bytes, and scoring
   reads the same version again (a changed file fails both reads). A file that changed since the
   listing waits for the next run.
2. **Known content is skipped**: a key already in the ledger (scored here, or the same content under
   another name) is recorded in the path index and not read again.
3. **Claim** the key (:mod:`tasks.scoring.claims`) before anything is deleted or written; a batch claimed by
   another run is skipped (that run scores it).
4. **Look at the ledger again** under the claim: another run may have committed the key meanwhile.
5. **Supersede**: if the path index says this location held other content before, that content's
   rows are removed (under its own claim) and its ledger record moves to ``ledger/superseded/``.
6. **Score** (:func:`tasks.scoring.score_file`): every part named with the claim's fence and
   published only after a claim check, every delete after one, the ledger entry written create-only
   and listing its parts (:mod:`tasks.scoring.batch_writer`); then record the location in the path index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common.retries import retry_if_transient
from tasks.scoring.claims import ClaimHeld
from tasks.scoring.claims import acquire
from tasks.scoring.claims import owner_name
from tasks.scoring.discovery import BatchFile
from tasks.scoring.discovery import InputFile
from tasks.scoring.discovery import LedgerRecord
from tasks.scoring.discovery import read_ledger
from tasks.scoring.discovery import read_superseded
from tasks.scoring.discovery import sha256_of
from tasks.scoring.discovery import supersede
from tasks.scoring.path_index import read_entry
from tasks.scoring.path_index import write_index
from tasks.scoring.score_file import BatchResult
from tasks.scoring.score_file import ScoringSettings
from tasks.scoring.score_file import remove_outputs
from tasks.scoring.score_file import score_file
from tasks.store.storage import FileChanged
from tasks.store.storage import Storage


@dataclass(frozen=True)
class ScoringRun:
    """Who is scoring, and how batches are shared with other runs."""

    run_id: str  # the flow run: named in claims and ledger records
    claim_seconds: float  # lease of a claim; renewed every third of it while the batch is scored
    rescore: bool = False  # score again content that is in the ledger already


def _skipped(file: InputFile, reason: str, key: str | None = None) -> BatchResult:
    return BatchResult(file.name, key, "skipped", reason=reason)


def _same_place(record: LedgerRecord, file: InputFile) -> bool:
    return (record.location or record.uri) in (file.location, file.uri)


def _already_done(storage: Storage, file: InputFile, batch: BatchFile, run: ScoringRun) -> BatchResult | None:
    """A skip result if this content needs no scoring (it is in the ledger, or was replaced), else None."""
    stale = read_superseded(storage, batch.key)
    if stale is not None and _same_place(stale, file) and stale.token == file.version.token:
        return _skipped(
            file, f"replaced by newer content of the same file ({stale.superseded_by})", batch.key
        )
    record = read_ledger(storage, batch.key)
    if record is None or (run.rescore and record.run_id != run.run_id):
        return None
    if _same_place(record, file):
        status, reason = (
            record.status,
            (
                f"reported unreadable on {record.finished_at} ({record.reason})"
                if record.status == "unreadable"
                else f"already scored (content {batch.key[:12]})"
            ),
        )
    else:
        status, reason = "duplicate", f"same content as {record.name}, already scored"
    write_index(
        storage,
        location=file.location,
        name=file.name,
        version=file.version,
        key=batch.key,
        status=status,
        reason=record.reason,
        duplicate_of=record.name if status == "duplicate" else None,
    )
    return _skipped(file, reason, batch.key)


def _supersede_previous(
    storage: Storage, file: InputFile, batch: BatchFile, run: ScoringRun, log
) -> str | None:
    """Remove the rows of the content this location held before (claimed first); returns its key."""
    previous = read_entry(storage, file.location)
    if previous is None or previous.key == batch.key or previous.status == "duplicate":
        return None
    owner = owner_name(run.run_id)
    with acquire(
        storage,
        previous.key,
        owner=owner,
        batch=f"{file.name} (earlier content)",
        lease_seconds=run.claim_seconds,
    ) as earlier:
        record = read_ledger(storage, previous.key)
        if record is not None and not _same_place(record, file):
            return None  # that content was scored again under another name since: its rows stay
        earlier.check()
        if record is not None:
            supersede(storage, record, batch.key, datetime.now(UTC))
        remove_outputs(storage, previous.key, check=earlier.check)
    log(f"{file.name}: new content {batch.key[:12]} replaces {previous.key[:12]}, whose rows were removed")
    return previous.key


def process_file(
    storage: Storage, file: InputFile, version: str, settings: ScoringSettings, run: ScoringRun, log=None
) -> BatchResult:
    """Steps 1-6 of the module docstring for one file; a skip is a result, not an error."""
    log = log or (lambda *a: None)
    try:
        with storage.open_version(file.uri, file.version) as handle:
            key = sha256_of(handle)
    except FileChanged as exc:
        return _skipped(file, f"waits for the next run: {exc}")
    except FileNotFoundError:
        return _skipped(file, "removed since it was listed")
    batch = file.batch(key)
    done = _already_done(storage, file, batch, run)
    if done is not None:
        return done
    try:
        claim = acquire(
            storage,
            key,
            owner=owner_name(run.run_id),
            batch=file.name,
            lease_seconds=run.claim_seconds,
            log=log,
        )
    except ClaimHeld as held:
        return _skipped(file, f"{held}: that run scores it", key)
    with claim:
        done = _already_done(storage, file, batch, run)
        if done is not None:
            return done
        try:
            supersedes = _supersede_previous(storage, file, batch, run, log)
        except ClaimHeld as held:
            return _skipped(file, f"its earlier content is {held}; waits for the next run", key)
        fields = {"location": file.location, "run_id": run.run_id, "supersedes": supersedes}
        try:
            result = score_file(
                storage,
                batch,
                version,
                settings,
                log,
                check=claim.check,
                fence=claim.fence,
                ledger_fields=fields,
            )
        except FileChanged as exc:
            return _skipped(file, f"waits for the next run: {exc}", key)
        write_index(
            storage,
            location=file.location,
            name=file.name,
            version=file.version,
            key=key,
            status=result.status,
            reason=result.reason,
        )
        return result


@task(
    name="score-batch",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_if_transient,
    task_run_name="score-{file.name}",
)
def score_batch(
    storage: Storage, file: InputFile, version: str, settings: ScoringSettings, run: ScoringRun
) -> BatchResult:
    """Prefect task around :func:`process_file`; retried only on transient storage errors, and a retry
    starts the file over (its leftovers are removed first)."""
    logger = get_run_logger()
    result = process_file(storage, file, version, settings, run, log=logger.info)
    if result.status == "unreadable":
        logger.error("Unreadable batch %s: %s (file left in place)", file.uri, result.reason)
    elif result.status == "skipped":
        logger.info("Skipping %s: %s", file.name, result.reason)
    else:
        logger.info(
            "Scored %s: %d rows in, %d predicted, %d rejected",
            file.name,
            result.rows_in,
            result.rows_predicted,
            result.rows_rejected,
        )
    return result
