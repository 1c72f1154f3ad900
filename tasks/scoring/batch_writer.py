"""Fenced writes of one batch's outputs: who may write, publish, commit and delete its files.

A run writes a batch only while it holds the batch's claim (:mod:`tasks.scoring.claims`); a run paused past
its lease (SIGSTOP, a suspended VM, a long GC) may wake up after another run took the claim over and
finished the batch. :class:`BatchWriter` keeps such a *stale* writer from doing harm:

* Every part's name carries the writer's **fence** (the claim generation at which it took the
  batch), so the parts of two writers of one batch never share a name and each run knows its own.
* The claim is **checked before every publish** (after the bytes are written under a temporary
  name, just before the rename or the PUT that makes them visible) and **before every delete**.
* On failure a run deletes **only its own** parts, and only while it still holds the claim; a run
  that lost its claim deletes nothing and says so (the new holder owns the batch now).
* The ledger entry is the commit point. It is written **create-only** and lists the fence and the
  parts it commits. A stale writer's entry cannot replace the holder's; if a stale writer's entry
  slipped in first (its one request was in flight when it lost the claim), the holder, which still
  holds the claim, replaces it. After its commit the holder removes every other part of the batch
  (older fences: a stale writer's late parts, the outputs a ``--rescore`` replaces).

What remains: a stale writer that passed its check and was paused *between the check and its one
publishing request* can still publish one part after the holder's commit and sweep. That part's
name has the stale fence and no ledger entry lists it; :func:`tasks.scoring.reconcile.reconcile_outputs`
removes it at the start of the next run (and until then a reader can tell it apart by the
``batch_key`` + the ledger's ``parts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import pyarrow as pa

from tasks.scoring.claims import ClaimLost
from tasks.scoring.discovery import LedgerRecord
from tasks.scoring.discovery import read_ledger
from tasks.store.ledger import ledger_record
from tasks.store.storage import Storage
from tasks.store.tables import parse_part
from tasks.store.tables import parts_of
from tasks.store.tables import write_part


def _no_claim() -> None:
    return None


class BatchWriter:
    """The outputs of one batch as one run writes them (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        key: str,
        *,
        fence: str | None = None,
        check: Callable[[], None] = _no_claim,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.storage = storage
        self.key = key
        self.fence = fence
        self.check = check
        self.log = log or (lambda *a: None)
        self.written: list[str] = []

    def write(self, table: str, when: datetime, part: int, data: pa.Table) -> str:
        """Write one part under this run's fence; published only if the claim still holds."""
        self.check()
        rel = write_part(self.storage, table, when, self.key, part, data, fence=self.fence, check=self.check)
        self.written.append(rel)
        return rel

    def clear(self) -> None:
        """Un-commit the batch and remove every part of it, before this run writes its own.

        Called under the claim once everything that can fail cheaply has been checked: the holder
        owns the batch, so the parts of earlier writers (a ``--rescore``'s old outputs, a killed run's
        leftovers, a stale writer's parts) are no one else's any more. The claim is checked before
        each delete.
        """
        self.check()
        self.storage.delete(ledger_record(self.key))
        for rel in parts_of(self.storage, self.key):
            if rel not in self.written:
                self.check()
                self.storage.delete(rel)

    def discard(self, why: str) -> None:
        """After a failure: delete this run's own uncommitted parts, only while it holds the claim."""
        try:
            self.check()
        except ClaimLost as lost:
            self.log(f"{self.key[:12]}: not deleting anything after the failure ({why}): {lost}")
            return
        own = set(self.written)
        if self.fence is not None:  # also a part whose publishing request failed after it landed
            own |= set(parts_of(self.storage, self.key, self.fence))
        for rel in sorted(own):
            self.check()
            self.storage.delete(rel)
        self.written = []

    def commit(self, record: LedgerRecord) -> LedgerRecord:
        """Write the ledger entry (create-only, listing this run's parts), then remove other parts."""
        record = replace(record, fence=self.fence, parts=list(self.written))
        for _ in range(5):
            self.check()
            try:
                self.storage.create(ledger_record(self.key), record.to_json().encode())
                break
            except FileExistsError:
                found = read_ledger(self.storage, self.key)
                if found is None:
                    continue
                if found.fence == self.fence and found.parts == record.parts:
                    break  # our own request landed although it reported a failure
                self.check()
                self.log(
                    f"{record.name}: replacing a ledger entry written after this run took the claim "
                    f"(fence {found.fence}, run {found.run_id}): its writer had lost the claim"
                )
                self.storage.delete(ledger_record(self.key))
        else:
            raise ClaimLost(f"{record.name}: the ledger entry keeps being written by another run")
        self.sweep()
        return record

    def sweep(self) -> None:
        """Remove every part of the batch that this run did not commit (stale writers' late parts)."""
        mine = set(self.written)
        try:
            for rel in parts_of(self.storage, self.key):
                if rel in mine:
                    continue
                self.check()
                self.storage.delete(rel)
                named = parse_part(rel)
                self.log(
                    f"{self.key[:12]}: removed {rel}, not committed "
                    f"(written by fence {named.fence if named else '?'}, whose claim was lost)"
                )
        except ClaimLost as lost:  # committed already; the next run's reconciliation finishes the job
            self.log(f"{self.key[:12]}: stopped removing uncommitted parts: {lost}")
