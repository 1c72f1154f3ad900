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

The file is an **XLSX workbook** (recommended: typed cells, nothing a spreadsheet evaluates or
reads in its locale) or a **CSV** made safe to open (every field quoted, formula-like text
neutralised, the confidence as a whole percentage); see :mod:`tasks.feedback.spreadsheet`. Either one,
filled in, goes into ``labels/`` unchanged: the label reader takes ``id``, ``comentario`` and
``categoria`` and ignores the other columns, reads ``;`` as well as ``,`` (a spreadsheet in a
Spanish locale saves with ``;``), undoes the CSV's neutralising quote, and counts rows left empty
as "not labelled", not as errors.

**Where it may write** (:func:`export_target`): outside the storage root, or under its
``exports/`` folder (the default, ``<storage>/exports/revision-<UTC time>.xlsx``); anywhere else
under the root is the pipeline's (``models/LATEST``, ``predictions/``, the ledger) and is refused,
after resolving symlinks. An existing file is replaced only with ``force``; a folder that does not
exist is not created (except ``exports/``).
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime

import numpy as np
import pandas as pd

from tasks.common.schema import CATEGORIES
from tasks.common.schema import text_key
from tasks.common.validation import DatasetError
from tasks.feedback.labels import labels_location
from tasks.feedback.labels import read_labels
from tasks.feedback.spreadsheet import safe_csv_bytes
from tasks.feedback.spreadsheet import xlsx_bytes
from tasks.store.folders import exports_uri
from tasks.store.folders import in_exports
from tasks.store.models import version_file
from tasks.store.storage import Storage
from tasks.store.tables import PARTITION_KEY
from tasks.store.tables import REVIEW
from tasks.store.tables import read_table

EXPORT_COLUMNS = (
    "id",
    "comentario",
    "categoria_pred",
    "confianza_pct",  # confidence in percent (0-100): the same in every locale and format
    "review_reason",
    "veces",
    "batch",
    "scored_date",
    "model_version",
    "categoria",
)
READ_COLUMNS = ("id", "comentario", "categoria_pred", "confianza", "review_reason", "model_version", "batch")
NO_WORDS = "no_readable_words"
TEXT_COLUMNS = ("id", "comentario", "categoria_pred", "review_reason", "batch", "model_version", "categoria")
FORMATS = ("xlsx", "csv")


def read_review_queue(storage: Storage, since: date | None = None) -> pd.DataFrame:
    """The ``review/`` table (rows scored on or after ``since``), or an empty frame when there is none."""
    table = read_table(storage, REVIEW, READ_COLUMNS, since)
    if table is None:
        return pd.DataFrame(columns=[*READ_COLUMNS, PARTITION_KEY])
    return table.to_pandas()


def model_classes(storage: Storage) -> tuple[str, ...]:
    """The classes of the model in service (``LATEST``), which training with ``--categories`` may have
    changed; the default classes before any model is in service."""
    from lstm_model.bundle import META_FILE  # here: the registry's modules import torch
    from lstm_model.bundle import labels_in_meta
    from tasks.registry.versions import current_latest

    latest = current_latest(storage)
    if latest is None:
        return tuple(CATEGORIES)
    return tuple(labels_in_meta(storage.read_bytes(version_file(latest, META_FILE))))


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
    frame["confianza_pct"] = np.round(frame["confianza"].astype(float) * 100, 1)
    return frame[list(EXPORT_COLUMNS)].reset_index(drop=True)


def export_csv(rows: pd.DataFrame) -> bytes:
    """The safe CSV of :mod:`tasks.feedback.spreadsheet`; the confidence as a whole percentage (``52``): a
    decimal separator is read differently by some locale (``51.8`` or ``0.518`` -> 518 in es-ES)."""
    whole = rows["confianza_pct"].round().astype("Int64")
    return safe_csv_bytes(rows.assign(confianza_pct=whole), TEXT_COLUMNS)


def export_xlsx(rows: pd.DataFrame) -> bytes:
    """The queue as one sheet ``revision``: confidence a number with one decimal, ``veces`` an integer,
    ``scored_date`` a date, every other cell text that is never evaluated."""
    return xlsx_bytes(
        rows,
        sheet="revision",
        number_formats={"confianza_pct": "0.0", "veces": "0"},
        date_columns=("scored_date",),
        widths={"comentario": 60, "review_reason": 28, "batch": 24, "model_version": 28, "categoria": 18},
    )


class ExportRefused(ValueError):
    """``--out`` names a place the export may not write (one line: what, and what to do)."""

    def __init__(self, problem: str, todo: str) -> None:
        super().__init__(f"{problem}: {todo}")
        self.problem = problem
        self.todo = todo


@dataclass(frozen=True)
class ExportTarget:
    uri: str  # as the user gave it (or the default), for messages
    fs: object  # fsspec filesystem
    path: str  # path inside fs
    format: str  # xlsx or csv
    make_folder: bool  # the target is under <storage>/exports/: its folders may be created


def default_out(storage: Storage, fmt: str, now: datetime | None = None) -> str:
    """``<storage>/exports/revision-<UTC time>.<fmt>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return exports_uri(storage, f"revision-{stamp}.{fmt}")


def _format_of(out: str, fmt: str | None) -> str:
    ext = posixpath.splitext(out.rstrip("/"))[1].lower().lstrip(".")
    if fmt is None:
        if ext in FORMATS:
            return ext
        raise ExportRefused(
            f"--out {out} does not end in .xlsx or .csv",
            "name the file .xlsx (recommended) or .csv; the label reader goes by the extension",
        )
    if ext != fmt:
        raise ExportRefused(
            f"--out {out} does not end in .{fmt} (--format {fmt})",
            f"name the file .{fmt}: the label reader goes by the extension",
        )
    return fmt


def _inside(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` when it is ``root`` or below it, else None (plain path strings)."""
    if path == root:
        return ""
    return path[len(root) + 1 :] if path.startswith(root.rstrip("/") + "/") else None


def export_target(
    storage: Storage, out: str | None, fmt: str | None = None, force: bool = False
) -> ExportTarget:
    """Where the export goes, or :class:`ExportRefused` (see the module docstring)."""
    from fsspec.implementations.local import LocalFileSystem

    given = out
    out = out or default_out(storage, fmt or "xlsx")
    fs, path = storage.filesystem_for(out)
    if storage.is_local and isinstance(fs, type(storage.fs)):
        path = os.path.realpath(path)  # a symlink (or ..) pointing into the root is the root
        rel = _inside(path, os.path.realpath(storage.path()))
    elif type(fs) is type(storage.fs):
        if any(part in ("", ".", "..") for part in path.rstrip("/").split("/")[1:]):
            raise ExportRefused(
                f"--out {out} has an empty, '.' or '..' part",
                "give a plain key such as s3://bucket/folder/file",
            )
        rel = _inside(path.rstrip("/"), storage.path())
    else:
        rel = None  # another filesystem: outside the root
    exports = rel is not None and in_exports(rel)
    if rel is not None and not exports:
        raise ExportRefused(
            f"--out {out} is inside the storage root {storage.uri()}"
            + (f" ({rel.split('/')[0]}/ belongs to the pipeline)" if rel else ""),
            f"write it outside the storage root, or under {exports_uri(storage)}/ (the default without --out)",
        )
    fmt = _format_of(out, fmt) if given else (fmt or "xlsx")
    if fs.isdir(path):
        raise ExportRefused(f"--out {out} is a folder", "give a file name ending in .xlsx or .csv")
    if not force and fs.exists(path):
        raise ExportRefused(f"--out {out} exists", "pass --force to replace it, or choose another name")
    parent = posixpath.dirname(path)
    if not exports and isinstance(fs, LocalFileSystem) and not fs.isdir(parent):
        raise ExportRefused(
            f"folder {parent} of --out does not exist", "create it first, or choose another folder"
        )
    return ExportTarget(out, fs, path, fmt, exports)


def write_export(target: ExportTarget, data: bytes, force: bool) -> None:
    """One write; without ``force`` a file that appeared since the check is not replaced (create-only:
    ``O_EXCL`` locally, ``If-None-Match: *`` on S3)."""
    from fsspec.implementations.local import LocalFileSystem

    fs = target.fs
    if isinstance(fs, LocalFileSystem):
        if target.make_folder:
            os.makedirs(posixpath.dirname(target.path), exist_ok=True)
        name = f".{posixpath.basename(target.path)}.{uuid.uuid4().hex}.tmp"
        temp = posixpath.join(posixpath.dirname(target.path), name)
        with open(temp, "wb") as handle:
            handle.write(data)
        try:
            if force:
                os.replace(temp, target.path)
            else:
                os.link(temp, target.path)  # fails if the name exists: nothing is replaced
        except FileExistsError:
            raise ExportRefused(
                f"--out {target.uri} exists", "pass --force to replace it, or choose another name"
            ) from None
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
        return
    try:
        fs.pipe_file(target.path, data, **({} if force else {"mode": "create"}))
    except FileExistsError:
        raise ExportRefused(
            f"--out {target.uri} exists", "pass --force to replace it, or choose another name"
        ) from None


def export_review(
    storage: Storage,
    out: str | ExportTarget | None = None,
    *,
    since: date | None = None,
    limit: int | None = None,
    labels: str = "auto",
    unreadable: list[tuple[str, str]] | None = None,
    fmt: str | None = None,
    force: bool = False,
) -> tuple[int, int]:
    """Write the review queue to ``out`` (a local path or any URI, or a checked :class:`ExportTarget`;
    default under ``exports/``) as ``fmt`` (default: from the extension, xlsx without ``out``);
    returns (rows written, rows in queue). The target is checked before anything is read.
    ``unreadable``: see :func:`labelled_already`."""
    target = out if isinstance(out, ExportTarget) else export_target(storage, out, fmt, force)
    queue = read_review_queue(storage, since)
    skip_ids, skip_texts = labelled_already(storage, labels, unreadable, model_classes(storage))
    rows = order_for_labelling(queue, skip_ids, skip_texts)
    if limit is not None:
        rows = rows.head(limit)
    data = export_xlsx(rows) if target.format == "xlsx" else export_csv(rows)
    write_export(target, data, force)
    return len(rows), len(queue)
