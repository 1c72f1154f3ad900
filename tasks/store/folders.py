"""The folders people use under the storage root (``incoming/``, ``labels/``, ``exports/``), and the
check that tells the pipeline's own folders from them.

Training creates the people's folders on a new local root, so the README's next step
(``cp my_batch.parquet X/incoming/``) works; the pipeline's own folders appear when something is
written to them. On S3 a folder is only a key prefix: nothing is created there (a zero-byte "folder"
object would show up in listings as a file of its own).
"""

from __future__ import annotations

from tasks.store.layout import EXPORTS
from tasks.store.layout import INCOMING
from tasks.store.layout import LABELS_DIR
from tasks.store.layout import OWN_FOLDERS
from tasks.store.layout import PEOPLE_FOLDERS
from tasks.store.storage import Storage


def incoming_uri(storage: Storage) -> str:
    """Where new batches arrive: the scoring flow's default ``--input``."""
    return storage.uri(INCOMING)


def labels_uri(storage: Storage) -> str:
    """Where analysts put label files: training's ``--labels auto``."""
    return storage.uri(LABELS_DIR)


def exports_uri(storage: Storage, name: str | None = None) -> str:
    """The review exports' folder, or the export file ``name`` in it."""
    return storage.uri(EXPORTS, name) if name else storage.uri(EXPORTS)


def in_exports(rel: str) -> bool:
    """Whether a path relative to the root is a file under ``exports/`` (the one place of the root
    a review export may be written to)."""
    return rel.split("/")[0] == EXPORTS and rel != EXPORTS


def own_folder_uris(storage: Storage) -> dict[str, str]:
    """Every top-level folder the project writes, with its URI: input is never read from under one."""
    return {folder: storage.uri(folder) for folder in OWN_FOLDERS}


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
