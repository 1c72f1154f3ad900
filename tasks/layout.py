"""The folders a storage root holds for people, created by training so the README's steps just work.

``comentarios train --storage X`` is the first command a new user runs; the next one is
``cp my_batch.parquet X/incoming/``, which fails on a local disk if ``incoming/`` does not exist. So
training creates the folders that people (not the pipeline) put files into or take files from:

* ``incoming/``: Parquet batches to score (``comentarios score``),
* ``labels/``: the analysts' filled-in review exports (read by the next training),
* ``exports/``: where ``comentarios review export`` writes by default (the one folder of the root
  where it may write).

The pipeline's own folders (``models/``, ``predictions/``, ``ledger/``, ...) appear when something is
written to them. On S3 (and any object store) a folder is only a key prefix: nothing is created
there, since a zero-byte "folder" object would show up in listings as a file of its own.
"""

from __future__ import annotations

from tasks.batches import INCOMING
from tasks.labels import LABELS_DIR
from tasks.storage import Storage

EXPORTS = "exports"
PEOPLE_FOLDERS = (INCOMING, LABELS_DIR, EXPORTS)


def create_layout(storage: Storage) -> list[str]:
    """Create the folders people use under a local storage root; returns the ones created (none on S3)."""
    if not storage.is_local:
        return []
    created = []
    for folder in PEOPLE_FOLDERS:
        path = storage.path(folder)
        if not storage.fs.isdir(path):
            storage.fs.makedirs(path, exist_ok=True)
            created.append(folder)
    return created
