"""``comentarios review export``: the review queue as a CSV an analyst fills in, most useful rows first.

The ``review/`` table holds every prediction flagged ``needs_review``; an analyst has time for some
of them. The export orders them so that the first rows teach the next model the most:

1. **One row per distinct comment** (compared without case or extra spaces): a comment that was
   flagged 40 times is labelled once (``veces`` says how many times it was flagged), and a comment
   already labelled in a label file (same id or same text, with a label training accepts) is not
   asked again.
2. **Lowest confidence first**, **classes mixed**: rows are taken in turns from each predicted class,
   least confident first, so a short export is not all one class (the model is unsure in different
   ways for each class, and training needs every class).
3. **Comments without a readable word last** (``no_readable_words``: emoji, digits): there is nothing
   in them for a model to learn.

The CSV is UTF-8 with a BOM (Excel then opens accents right), comma-separated, with an empty
``categoria`` column as the last column. The filled file goes into ``labels/`` unchanged: the label
reader takes ``id``, ``comentario`` and ``categoria`` and ignores the other columns, reads ``;`` as
well as ``,`` (a spreadsheet in a Spanish locale saves with ``;``), and counts rows left empty as
"not labelled", not as errors.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from tasks.common.layout import REVIEW
from tasks.common.schema import CATEGORIES
from tasks.common.storage import Storage
from tasks.common.validation import DatasetError
from tasks.feedback.labels import labels_location
from tasks.feedback.labels import read_labels

EXPORT_COLUMNS = (
    "id",
    "comentario",
    "categoria_pred",
    "confianza",
    "review_reason",
    "veces",
    "batch",
    "scored_date",
    "model_version",
    "categoria",
)
READ_COLUMNS = ("id", "comentario", "categoria_pred", "confianza", "review_reason", "model_version", "batch")
NO_WORDS = "no_readable_words"


def read_review_queue(storage: Storage, since: date | None = None) -> pd.DataFrame:
    """The ``review/`` table (rows scored on or after ``since``), or an empty frame when there is none."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    empty = pd.DataFrame(columns=[*READ_COLUMNS, "scored_date"])
    if not storage.glob(f"{REVIEW}/scored_date=*/*.parquet"):
        return empty
    dataset = ds.dataset(
        storage.path(REVIEW),
        filesystem=storage.fs,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("scored_date", pa.string())]), flavor="hive"),
    )
    where = ds.field("scored_date") >= since.isoformat() if since else None
    return dataset.to_table(columns=[*READ_COLUMNS, "scored_date"], filter=where).to_pandas()


def text_key(texts: pd.Series) -> pd.Series:
    """Comments compared without case or extra spaces."""
    return texts.fillna("").str.casefold().str.split().str.join(" ")


def model_classes(storage: Storage) -> tuple[str, ...]:
    """The classes of the model in service (``LATEST``), which training with ``--categories`` may have
    changed; the default classes before any model is in service."""
    from lstm_model.bundle import META_FILE  # here: the registry's modules import torch
    from lstm_model.bundle import labels_in_meta
    from tasks.registry.versions import current_latest
    from tasks.registry.versions import version_dir

    latest = current_latest(storage)
    if latest is None:
        return tuple(CATEGORIES)
    return tuple(labels_in_meta(storage.read_bytes(f"{version_dir(latest)}/{META_FILE}")))


def labelled_already(
    storage: Storage,
    setting: str = "auto",
    unreadable: list[tuple[str, str]] | None = None,
    categories: Sequence[str] = CATEGORIES,
) -> tuple[set[str], set[str]]:
    """(ids, text keys) of the label rows a training would use (``--labels``), read and checked as
    training reads them: a row whose label was rejected (``precio`` for ``precios``, an id twice in
    one file) is still unlabelled, so it may be asked again.

    A label file that cannot be read raises, or, given ``unreadable``, is listed there and skipped
    (its rows may then be asked again)."""
    location = labels_location(storage, setting)
    if location is None:
        return set(), set()
    labels = read_labels(storage, location, categories)
    if labels.unreadable and unreadable is None:
        raise DatasetError(labels.unreadable[0][1])
    if unreadable is not None:
        unreadable.extend(labels.unreadable)
    return set(labels.rows["id"].astype(str)), set(text_key(labels.rows["comentario"].astype(str)))


def order_for_labelling(
    queue: pd.DataFrame, skip_ids: set[str] = frozenset(), skip_texts: set[str] = frozenset()
) -> pd.DataFrame:
    """The queue as export rows, most useful first (see the module docstring)."""
    frame = queue.assign(_key=text_key(queue["comentario"]), id=queue["id"].astype(str))
    frame = frame[~frame["id"].isin(skip_ids) & ~frame["_key"].isin(skip_texts)]
    frame = frame.sort_values(["confianza", "scored_date", "id"], kind="stable", na_position="last")
    counts = frame.groupby("_key").size()
    frame = frame.drop_duplicates("_key", keep="first").copy()  # the least confident occurrence
    frame["veces"] = frame["_key"].map(counts).astype("int64")
    no_words = frame["review_reason"].fillna("").str.contains(NO_WORDS, regex=False)
    # Turns: the least confident row of each class, then the second of each, ...
    frame["_turn"] = frame.groupby(frame["categoria_pred"].fillna(""), sort=False).cumcount()
    frame = frame.assign(_last=no_words.to_numpy()).sort_values(
        ["_last", "_turn", "confianza"], kind="stable"
    )
    frame["categoria"] = ""
    frame["confianza"] = np.round(frame["confianza"].astype(float), 4)
    return frame[list(EXPORT_COLUMNS)].reset_index(drop=True)


def export_csv(rows: pd.DataFrame) -> bytes:
    """UTF-8 with a BOM, comma-separated, every field quoted only where needed."""
    out = io.StringIO()
    rows.to_csv(out, index=False)
    return out.getvalue().encode("utf-8-sig")


def export_review(
    storage: Storage,
    out: str,
    *,
    since: date | None = None,
    limit: int | None = None,
    labels: str = "auto",
    unreadable: list[tuple[str, str]] | None = None,
) -> tuple[int, int]:
    """Write the review queue to ``out`` (a local path or any URI); returns (rows written, rows in queue).
    ``unreadable``: see :func:`labelled_already`."""
    queue = read_review_queue(storage, since)
    skip_ids, skip_texts = labelled_already(storage, labels, unreadable, model_classes(storage))
    rows = order_for_labelling(queue, skip_ids, skip_texts)
    if limit is not None:
        rows = rows.head(limit)
    storage.write_uri(out, export_csv(rows))
    return len(rows), len(queue)
