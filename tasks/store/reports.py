"""Where the scoring runs' HTML reports live: ``reports/runs/<UTC time>-<run>.html``.

One file per run, never replaced: the name holds the run's start time (so a listing sorts by time)
and the first characters of the Prefect flow run id (so two runs started in the same second differ).
The per-batch summaries beside them (``reports/batches/``) are a table (:mod:`tasks.store.tables`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from tasks.store.layout import RUNS


def run_report_file(when: datetime, run_id: str | None) -> str:
    return f"{RUNS}/{when:%Y%m%dT%H%M%SZ}-{(run_id or uuid.uuid4().hex)[:8]}.html"
