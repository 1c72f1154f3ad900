"""Switching ``models/LATEST`` and the promotions log: who put which version in service, when and why.

Every promotion, automatic (the training flow's gate) or by hand (``comentarios models promote``,
also a rollback), is one write of ``LATEST`` followed by one log entry. The log is **one small JSON
object per promotion** under ``models/promotions/`` (named ``<UTC time>-<version>.json``, so name
order is time order), read back as one list (``comentarios models log`` prints it as JSON Lines).
Not a single ``promotions.jsonl``: S3 has no append, so each entry would rewrite the whole file
(read-modify-write), and two promotions at once would lose one of them; an object per entry is
written once and never touched again, on S3 as on disk.

``LATEST`` is written first: if the process dies in between, the model in service is right and only
its log line is missing (``models list`` still shows which version is ``LATEST``).
"""

from __future__ import annotations

import getpass
import json
from datetime import UTC
from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common.retries import retry_if_transient
from tasks.registry.gate import PromotionDecision
from tasks.registry.versions import current_latest
from tasks.registry.versions import set_latest
from tasks.store.models import promotion_record
from tasks.store.models import promotion_records
from tasks.store.models import version_uri
from tasks.store.storage import Storage

AUTOMATIC, MANUAL = "automatic", "manual"


def who() -> str:
    """The user running the command (``getpass.getuser``); "unknown" in a container without one."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_READ_LATEST: Any = object()


def promote(
    storage: Storage,
    version: str,
    *,
    reason: str,
    kind: str = MANUAL,
    now: datetime | None = None,
    previous: str | None = _READ_LATEST,
) -> dict[str, Any]:
    """Put ``version`` in service (one write of ``LATEST``) and log it; returns the log entry.

    ``previous`` (default: what ``LATEST`` names now) is the log's "from": a retried automatic
    promotion passes the champion it was compared with, since ``LATEST`` may already name ``version``.
    """
    now = now or datetime.now(UTC)
    if previous is _READ_LATEST:
        previous = current_latest(storage)
    set_latest(storage, version)  # refuses an incomplete or unknown version
    entry = {
        "time": now.isoformat(timespec="microseconds"),
        "from": previous,
        "to": version,
        "user": who(),
        "kind": kind,
        "reason": reason,
    }
    storage.write_text(promotion_record(now, version), json.dumps(entry, ensure_ascii=False) + "\n")
    return entry


def read_promotions(storage: Storage) -> list[dict[str, Any]]:
    """The promotions log, oldest first."""
    return [json.loads(storage.read_text(path)) for path in promotion_records(storage)]


@task(
    name="apply-promotion",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
)
def apply_promotion(storage: Storage, version: str, decision: PromotionDecision) -> bool:
    """Promote ``version`` if the gate said so; either way, the log says why."""
    logger = get_run_logger()
    why = "; ".join(decision.reasons)
    if decision.promote:
        entry = promote(storage, version, reason=why, kind=AUTOMATIC, previous=decision.champion)
        logger.info("Promoted %s (was %s): %s", version, entry["from"] or "nothing", why)
        return True
    logger.warning(
        "NOT promoted: %s is kept under %s but 'latest' is unchanged (%s): %s. "
        "To put it in service anyway: comentarios models promote %s --storage %s",
        version,
        version_uri(storage, version),
        decision.champion or "none",
        why,
        version,
        storage.root,
    )
    return False
