"""Where scoring keeps its books under the storage root: the ledger (``ledger/<key>.json``, one record
per committed batch: the commit point), superseded records (``ledger/superseded/<key>.json``), the
path index (``ledger/by-path/<hash>.json``: what each file location held when it was last read) and
the claims (``claims/<key>/<generation>.json``: one run at a time per batch).

Only paths and listings here; what a record holds, and when one is written, created or removed, is
the scoring job's (:mod:`tasks.scoring.discovery`, :mod:`tasks.scoring.claims`,
:mod:`tasks.scoring.path_index`, :mod:`tasks.scoring.reconcile`).
"""

from __future__ import annotations

import hashlib
import posixpath

from tasks.store.layout import CLAIMS
from tasks.store.layout import INDEX
from tasks.store.layout import LEDGER
from tasks.store.layout import SUPERSEDED
from tasks.store.storage import Storage

GENERATION_DIGITS = 12  # claim generations are zero-padded, so their names (and part fences) sort


def ledger_record(key: str) -> str:
    return f"{LEDGER}/{key}.json"


def superseded_record(key: str) -> str:
    return f"{SUPERSEDED}/{key}.json"


def ledger_records(storage: Storage) -> dict[str, str]:
    """Batch key -> ledger record path, for every committed batch (superseded ones are not listed)."""
    return {posixpath.basename(rel)[: -len(".json")]: rel for rel in storage.glob(f"{LEDGER}/*.json")}


def index_record(location: str) -> str:
    """The path index entry of a file location (hashed: a location may hold any character)."""
    return f"{INDEX}/{hashlib.sha256(location.encode()).hexdigest()[:40]}.json"


def index_records(storage: Storage) -> set[str]:
    """Every path index entry there is."""
    return set(storage.glob(f"{INDEX}/*.json"))


def claim_generation(key: str, generation: int) -> str:
    """One generation of a batch's claim."""
    return f"{CLAIMS}/{key}/{generation:0{GENERATION_DIGITS}d}.json"


def claim_generations(storage: Storage, key: str) -> list[tuple[int, str]]:
    """The generations of ``key``'s claim written so far, oldest first, with their paths."""
    found = []
    for rel in storage.glob(f"{CLAIMS}/{key}/*.json"):
        stem = posixpath.basename(rel)[: -len(".json")]
        if stem.isdigit():
            found.append((int(stem), rel))
    return sorted(found)
