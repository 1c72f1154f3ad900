"""Where the model registry lives under the storage root: ``models/<version>/``, ``models/LATEST`` and
the promotions log ``models/promotions/``.

Only paths and plain reads and writes here: what a complete version is, how it is verified and
loaded, and when one is promoted are the registry's (:mod:`tasks.registry`). The names of the
bundle's own files (weights, ``bundle.json``...) are :mod:`lstm_model.bundle`'s; this module puts
them in their folder. Version names are plain names (no path separators), so ``--model`` can only
ever reach into ``models/``.
"""

from __future__ import annotations

import re
from datetime import datetime

from tasks.store.layout import COMPLETE
from tasks.store.layout import EVAL_FILE
from tasks.store.layout import LATEST
from tasks.store.layout import LEARNING_CURVE_FILE
from tasks.store.layout import MODELS
from tasks.store.layout import PROMOTIONS
from tasks.store.layout import REJECTED_ROWS_FILE
from tasks.store.storage import Storage

__all__ = [  # the names of the files a version holds besides the bundle's own
    "COMPLETE",
    "EVAL_FILE",
    "LEARNING_CURVE_FILE",
    "REJECTED_ROWS_FILE",
]

_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ModelNotFound(LookupError):
    pass


def check_version_name(version: str) -> str:
    """``version`` if it is a plain version name: letters, digits, ``.``, ``_``, ``-``; no path, no ``..``."""
    if not _VERSION_NAME.fullmatch(version) or ".." in version:
        raise ModelNotFound(
            f"{version!r} is not a model version name (a folder name under models/, or 'latest'; no paths)"
        )
    return version


def version_dir(version: str) -> str:
    return f"{MODELS}/{check_version_name(version)}"


def version_file(version: str, name: str) -> str:
    """A file of ``version``'s folder (``name`` is a plain file name such as ``bundle.json``)."""
    return f"{version_dir(version)}/{name}"


def manifest_file(version: str) -> str:
    """The ``_COMPLETE`` manifest: written last, it marks the version complete."""
    return version_file(version, COMPLETE)


def version_uri(storage: Storage, version: str, name: str | None = None) -> str:
    """The URI of ``version``'s folder, or of its file ``name``."""
    return storage.uri(version_file(version, name) if name else version_dir(version))


def models_uri(storage: Storage) -> str:
    """The registry's folder, for messages (``no model under ...``)."""
    return storage.uri(MODELS)


def local_folders(storage: Storage, version: str) -> tuple[str, str]:
    """``models/`` and ``version``'s folder as local paths (only for a local storage root: link checks)."""
    return storage.path(MODELS), storage.path(version_dir(version))


def complete_versions(storage: Storage) -> list[str]:
    """Names of the complete versions (those with a ``_COMPLETE`` manifest), oldest first."""
    return [path.split("/")[-2] for path in storage.glob(f"{MODELS}/*/{COMPLETE}")]


def read_latest(storage: Storage) -> str | None:
    """What ``LATEST`` holds (stripped), None before any promotion."""
    return storage.read_text(LATEST).strip() if storage.exists(LATEST) else None


def write_latest(storage: Storage, version: str) -> None:
    """Point ``LATEST`` at ``version`` in one write (the registry checks the version first)."""
    storage.write_text(LATEST, check_version_name(version) + "\n")


def promotion_record(when: datetime, version: str) -> str:
    """The promotions log entry of switching ``LATEST`` to ``version`` at ``when``: names sort by time."""
    return f"{PROMOTIONS}/{when:%Y%m%dT%H%M%S%fZ}-{check_version_name(version)}.json"


def promotion_records(storage: Storage) -> list[str]:
    """Every entry of the promotions log, oldest first."""
    return storage.glob(f"{PROMOTIONS}/*.json")
