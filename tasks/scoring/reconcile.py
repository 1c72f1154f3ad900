"""Start-of-run reconciliation: the tables hold only committed parts, whatever stale writers did.

Analysts read ``predictions/``, ``review/`` and ``errors/`` with pandas or DuckDB directly, without
the ledger, so a part that no ledger entry commits must not stay there. Most never appear
(:mod:`tasks.scoring.batch_writer` checks the claim before each publish, and a holder removes other
writers' parts when it commits); what is left is a stale writer's part published in the one request
after its last check, and the parts of runs killed before they could clean up.

Before a scoring run lists its input, :func:`reconcile_outputs`:

1. un-commits a ledger entry whose listed parts are not all there (a stale writer's entry that
   slipped in after the new holder had removed its parts), so the batch is scored again;
2. removes every part (and temporary file) that no ledger entry lists, once its writer's lease is
   over: nobody holds the batch's claim, or the holder has another fence. The parts of a run that
   holds its claim now are left alone (they are that run's work in progress).

Every removal is logged with the reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field

from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common.retries import retry_if_transient
from tasks.scoring.claims import live_fence
from tasks.scoring.discovery import LedgerRecord
from tasks.scoring.discovery import read_ledger
from tasks.store.ledger import ledger_record
from tasks.store.ledger import ledger_records
from tasks.store.storage import Storage
from tasks.store.tables import parse_part
from tasks.store.tables import parts_of


@dataclass
class Reconciled:
    """What a reconciliation removed: part paths, and ledger keys un-committed."""

    removed: list[str] = field(default_factory=list)
    uncommitted: list[str] = field(default_factory=list)


def _ledger(storage: Storage) -> dict[str, LedgerRecord]:
    keys = {rel: key for key, rel in ledger_records(storage).items()}
    return {
        keys[rel]: LedgerRecord.from_json(data.decode("utf-8"))
        for rel, data in storage.read_many(keys).items()
    }


def _commits(record: LedgerRecord | None, rel: str) -> bool:
    """Whether ``record`` commits part ``rel`` (entries without a parts list: the unfenced parts)."""
    if record is None:
        return False
    named = parse_part(rel)
    if record.parts is None:
        return named is not None and named.fence is None and not named.temporary
    return rel in record.parts


def reconcile_outputs(storage: Storage, log: Callable[[str], None] | None = None) -> Reconciled:
    """Steps 1 and 2 of the module docstring; returns what was removed."""
    log = log or (lambda *a: None)
    done = Reconciled()
    parts = parts_of(storage)
    present = set(parts)
    ledger = _ledger(storage)
    for key, record in sorted(ledger.items()):
        missing = [rel for rel in record.parts or [] if rel not in present]
        if not missing or live_fence(storage, key) is not None:
            continue
        if all(not storage.exists(rel) for rel in missing):  # not just written after the listing
            again = read_ledger(storage, key)
            if again is not None and again.fence == record.fence:
                storage.delete(ledger_record(key))
                done.uncommitted.append(key)
                del ledger[key]
                log(
                    f"Un-committed {record.name} ({key[:12]}): its ledger entry lists {len(missing)} "
                    f"part(s) that are gone, e.g. {missing[0]} (written by a run that had lost its "
                    "claim); it will be scored again"
                )
    by_key: dict[str, list[str]] = defaultdict(list)
    for rel in parts:
        named = parse_part(rel)
        if named is not None and not _commits(ledger.get(named.key), rel):
            by_key[named.key].append(rel)
    for key, stale in sorted(by_key.items()):
        holder = live_fence(storage, key)
        record = read_ledger(storage, key)  # read after the claim: a commit since the listing counts
        for rel in stale:
            named = parse_part(rel)
            if _commits(record, rel) or (holder is not None and named.fence in (holder, None)):
                continue  # committed meanwhile, or the work in progress of the claim's holder
            storage.delete(rel)
            done.removed.append(rel)
            writer = f"fence {named.fence}" if named.fence else "a run without a fence"
            why = "no claim is held" if holder is None else f"the claim is held by fence {holder}"
            log(f"Removed {rel}: no ledger entry lists it and its writer ({writer}) has no lease ({why})")
    return done


@task(
    name="reconcile-outputs",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
)
def reconcile_task(storage: Storage) -> Reconciled:
    """Prefect task around :func:`reconcile_outputs`, run before the input is listed."""
    logger = get_run_logger()
    done = reconcile_outputs(storage, log=logger.warning)
    if done.removed or done.uncommitted:
        logger.warning(
            "Reconciliation removed %d uncommitted part(s) and un-committed %d batch(es)",
            len(done.removed),
            len(done.uncommitted),
        )
    return done
