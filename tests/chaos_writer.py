"""Run A of the chaos tests (test_stale_writers.py): scores one batch as ``comentarios score`` does
(:func:`tasks.scoring.batch_job.process_file`, real claim), and stops itself with SIGSTOP at one write point.

    python tests/chaos_writer.py <storage root> <endpoint or ""> <input uri> <point> <claim s> <chunk rows>

It prints ``PAUSED <point>`` just before stopping, so the test knows the process is frozen exactly
there (the whole process stops, its claim-renewing thread too, as with ``kill -STOP``). Points:

* ``temp-part``: predictions part 0 written to its temporary file / upload buffer, not yet published
* ``publish-window``: predictions part 1 written and its claim check passed, not yet published
* ``predictions-<n>``: right after predictions part ``n`` is published
* ``review``, ``rejected``: right after the first part of that table is published
* ``ledger``: right before the request that writes the ledger entry

The hooks wrap functions from outside (no hook lives in the product code), at names that exist
before and after fencing, so the same script measures both.
"""

from __future__ import annotations

import os
import posixpath
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow.parquet as pq

import tasks.scoring.score_file
import tasks.store.tables
from flows.configs import ScoreConfig
from tasks.scoring.batch_job import ScoringRun
from tasks.scoring.batch_job import process_file
from tasks.scoring.discovery import InputFile
from tasks.scoring.path_index import location_of
from tasks.store.layout import PREDICTIONS
from tasks.store.storage import Storage

MODEL_VERSION = "20250101T000000Z-testlstm"


def pause(point: str) -> None:
    print(f"PAUSED {point}", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
    print(f"RESUMED {point}", flush=True)


def install_hooks(point: str) -> None:
    seen: dict[str, int] = {}
    real_write_table = pq.write_table

    def write_table(table, where, *args, **kwargs):
        real_write_table(table, where, *args, **kwargs)
        seen["tables"] = seen.get("tables", 0) + 1
        if point == "temp-part" and seen["tables"] == 1:  # the first part is predictions part 0
            pause(point)

    tasks.store.tables.pq.write_table = write_table

    def wrap_write_part(real):
        def write_part(storage, table, when, key, part, data, *args, **kwargs):
            rel = real(storage, table, when, key, part, data, *args, **kwargs)
            count = seen[table] = seen.get(table, 0) + 1
            if table == PREDICTIONS and point == f"predictions-{part}":
                pause(point)
            elif point in ("review", "rejected") and table.endswith(point) and count == 1:
                pause(point)
            return rel

        return write_part

    for module_name in ("tasks.scoring.score_file", "tasks.scoring.batch_writer"):
        module = sys.modules.get(module_name) or _maybe_import(module_name)
        if module is not None and hasattr(module, "write_part"):
            module.write_part = wrap_write_part(module.write_part)

    real_open_write = Storage.open_write

    def open_write(self, rel, **kwargs):
        check = kwargs.get("before_publish")
        if point == "publish-window" and check is not None and "predictions/" in rel and "-00001." in rel:

            def checked_then_paused():
                check()
                pause(point)

            kwargs["before_publish"] = checked_then_paused
        return real_open_write(self, rel, **kwargs)

    Storage.open_write = open_write

    if point == "ledger":
        if hasattr(tasks.scoring.score_file, "write_ledger"):  # before fencing: an overwrite after check()
            real_write_ledger = tasks.scoring.score_file.write_ledger

            def write_ledger(*args, **kwargs):
                pause(point)
                return real_write_ledger(*args, **kwargs)

            tasks.scoring.score_file.write_ledger = write_ledger
        real_create = Storage.create

        def create(self, rel, data):  # with fencing: the create-only write after the last check
            if rel.startswith("ledger/"):
                pause(point)
            return real_create(self, rel, data)

        Storage.create = create


def _maybe_import(name: str):
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None


def input_file(storage: Storage, input_uri: str) -> InputFile:
    root, files = storage.list_files(input_uri)
    ((path, version),) = files.items()
    uri = storage.uri_of(input_uri, path)
    return InputFile(uri, posixpath.relpath(path, root), location_of(storage, uri), version)


def main() -> int:
    root, endpoint, input_uri, point, claim_seconds, chunk_rows = sys.argv[1:7]
    storage = Storage(root, endpoint or None)
    install_hooks(point)
    settings = ScoreConfig(chunk_rows=int(chunk_rows)).scoring_settings()
    run = ScoringRun(run_id="run-A", claim_seconds=float(claim_seconds))
    try:
        result = process_file(
            storage, input_file(storage, input_uri), MODEL_VERSION, settings, run, log=print
        )
    except Exception as exc:
        print(f"A FAILED {type(exc).__name__}: {exc}", flush=True)
        return 3
    print(f"A RESULT {result.status} {result.reason or ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
