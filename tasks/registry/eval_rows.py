"""The rows a published version is judged on (``models/<version>/eval.parquet``).

Training writes them (:func:`tasks.training.rows.evaluation_rows`); the champion/challenger check of a
later training and scoring's precision check read them, so their shape is the registry's business.
"""

from __future__ import annotations

import io

import pandas as pd

from tasks.store.models import EVAL_FILE
from tasks.store.models import version_file
from tasks.store.storage import Storage

EVAL_SET = "set"  # eval.parquet's column naming the evaluation set of a row
EVAL_COLUMNS = ("id", "comentario", "categoria", EVAL_SET)


def read_eval_rows(storage: Storage, version: str, columns: list[str] | None = None) -> pd.DataFrame | None:
    """A version's ``eval.parquet`` (None for versions trained before it existed)."""
    try:
        data = storage.read_bytes(version_file(version, EVAL_FILE))
    except FileNotFoundError:
        return None
    return pd.read_parquet(io.BytesIO(data), columns=columns)
