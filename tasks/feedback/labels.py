"""Label files that analysts drop under ``<storage>/labels/``: read, validated, and merged into training.

A label file is Parquet, CSV or JSON Lines with at least ``id``, ``comentario`` and ``categoria``
(other columns, such as those of a filled review export, are allowed and ignored). CSV is UTF-8 with
or without a BOM, separated by ``,`` or by ``;`` (what a spreadsheet in a Spanish locale writes),
detected from the header line.

What happens to each row of a readable file (nothing is dropped silently):

* ``categoria`` empty: the analyst did not label it (a review export holds every flagged row). Counted
  and logged as "not labelled", never an error.
* A row that breaks a rule (``id`` missing or twice in one file, ``comentario`` missing or blank,
  ``categoria`` not a class) goes to the version's ``rejected_rows.parquet`` with its file name
  (``source_file``), row number and reason. ``categoria`` is compared without case, surrounding
  spaces or accents (``Logística`` is ``logistica``).
* The same ``id`` in several files: the file later in name order wins (a correction is a new file);
  the earlier rows go to the report as ``label_superseded``, saying whether the label differed.
* A label row replaces a source row with the same ``id`` (``replaced_by_label`` in the report).

A file that cannot be read at all (not UTF-8, not the format its extension says, a required column
missing, an unknown extension) does not stop the others: the run trains on the readable files, records
the file in ``bundle.json`` (``data.label_files_unreadable``), does not promote that version (the file
may correct older labels: :func:`tasks.registry.gate.unreadable_labels_blocker`), and ends Failed with one line
naming it (as scoring does with an unreadable batch), so it is seen. The file stays where it is for the
analyst to fix; the next training reads it.
"""

from __future__ import annotations

import csv
import io
import posixpath
import time
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

import pandas as pd
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common.batch_hints import column_hints
from tasks.common.records import parse_records
from tasks.common.retries import retry_if_transient
from tasks.common.schema import fold_name
from tasks.common.validation import DatasetError
from tasks.common.validation import Rule
from tasks.common.validation import apply_rules
from tasks.common.validation import labelled_comment_rules
from tasks.common.validation import short
from tasks.common.validation import text_or_null
from tasks.feedback.spreadsheet import NotXlsx
from tasks.feedback.spreadsheet import read_xlsx_frame
from tasks.feedback.spreadsheet import restore_text
from tasks.store.folders import labels_uri
from tasks.store.storage import Storage

LABEL_COLUMNS = ("id", "comentario", "categoria")
SOURCE_FILE = "source_file"  # the rejected report's column naming where a row came from
ROW_NUMBER = "row_number"  # position of a row in its file (0 = first data row)
ORIGIN = "origin"  # "source" or "labels": where a training row came from
CSV_SEPARATORS = (",", ";", "\t")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".xlsx": "xlsx",  # the review export's recommended form (tasks/feedback/spreadsheet.py)
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # parse_records takes a JSON array as well as JSON Lines
}
SUPERSEDED = "label_superseded"
REPLACED = "replaced_by_label"


@dataclass(frozen=True)
class LabelSet:
    """The label rows a training run uses, and what happened to the others."""

    rows: pd.DataFrame  # id, comentario, categoria, source_file, row_number: one row per id
    rejected: pd.DataFrame  # the file's columns + source_file, row_number, rule, reason
    files: tuple[str, ...] = ()
    unlabelled: int = 0  # rows with an empty categoria (not labelled yet)
    conflicts: tuple[str, ...] = field(default_factory=tuple)  # one line per id labelled differently
    unreadable: tuple[tuple[str, str], ...] = ()  # (file name, why) of each file that could not be read
    skipped: tuple[str, ...] = ()  # names skipped as temporary, marker or lock files (SKIPPED_PREFIXES)
    waiting: tuple[str, ...] = ()  # names younger than --min-file-age: read by the next training

    @classmethod
    def empty(cls) -> LabelSet:
        return cls(pd.DataFrame(columns=[*LABEL_COLUMNS, SOURCE_FILE, ROW_NUMBER]), pd.DataFrame())


def labels_location(storage: Storage, setting: str) -> str | None:
    """Where the label files are: ``auto`` is ``<storage>/labels/``, ``none`` is no labels."""
    if setting.strip().lower() == "none":
        return None
    if setting.strip().lower() == "auto":
        return labels_uri(storage)
    return setting


SKIPPED_PREFIXES = (".", "_", "~$")  # hidden and temporary files, Spark's _SUCCESS, Excel's ~$ lock


def label_file_uris(storage: Storage, location: str) -> list[tuple[str, str]]:
    """(name, path) of every label file at ``location`` (a folder, searched recursively, or one file),
    in name order, without the skipped ones (see :func:`label_file_listing`)."""
    return label_file_listing(storage, location)[0]


def label_file_listing(storage: Storage, location: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(files to read as (name, path), names skipped), both in name order. A name with a part starting
    with ``.``, ``_`` or ``~$`` (temporary, marker and lock files) is skipped; the training logs and
    records those names, so a label file named ``_urgente.csv`` is not lost without a trace."""
    fs, path = storage.filesystem_for(location)
    path = path.rstrip("/")
    if not fs.exists(path):
        return [], []
    if fs.isfile(path):
        return [(posixpath.basename(path), path)], []
    found, skipped = [], []
    for item in fs.find(path):
        name = posixpath.relpath(item, path)
        if any(part.startswith(SKIPPED_PREFIXES) for part in name.split("/")):
            skipped.append(name)
        else:
            found.append((name, item))
    return sorted(found), sorted(skipped)


def split_by_age(
    storage: Storage, location: str, files: list[tuple[str, str]], min_file_age: float
) -> tuple[list[tuple[str, str]], list[str]]:
    """(files old enough to read, names of those modified less than ``min_file_age`` seconds ago).

    A file still being copied into ``labels/`` must not be trained on (a cut copy can hold a valid
    prefix of the rows), so, as scoring does with incoming batches (``--min-file-age``), a young
    file waits for the next training; the run logs it and ``bundle.json`` lists it.
    """
    if min_file_age <= 0 or not files:
        return files, []
    from tasks.store.storage import version_from_info

    fs, _ = storage.filesystem_for(location)
    now = time.time()
    ready: list[tuple[str, str]] = []
    young: list[str] = []
    for name, path in files:
        if now - version_from_info(fs, path, fs.info(path)).mtime < min_file_age:
            young.append(name)
        else:
            ready.append((name, path))
    return ready, young


def canonical_categoria(value: object, categories: Sequence[str]) -> object:
    """``value`` as one of ``categories`` when it is one up to case, spaces and accents; else as given."""
    if not isinstance(value, str):
        return value
    wanted = _fold(value)
    for category in categories:
        if _fold(category) == wanted:
            return category
    return value


_fold = fold_name


def csv_separator(text: str) -> str:
    """The separator of a CSV text: whichever of ``,`` ``;`` and tab its header line holds most of.

    Column names never contain these characters, so the header decides; a one-column header (no
    separator at all) reads as ``,``.
    """
    header = text.split("\n", 1)[0]
    counts = {sep: header.count(sep) for sep in CSV_SEPARATORS}
    best = max(CSV_SEPARATORS, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def read_label_file(name: str, data: bytes, categories: Sequence[str] | None = None) -> pd.DataFrame:
    """One label file as a frame of text columns (CSV cells as written; empty cells as ""); with
    ``categories``, a CSV's last row without a line break must also hold one of them (see
    :func:`_refuse_cut_last_row`)."""
    kind = EXTENSIONS.get(posixpath.splitext(name)[1].lower())
    if kind is None:
        raise DatasetError(
            f"label file {name}: unknown kind of file (use .xlsx, .csv, .parquet or .jsonl; "
            f"move other files out of the labels folder)"
        )
    if (
        kind not in ("parquet", "xlsx")
        and len(data) < 64
        and b"".join(data.removeprefix(b"\xef\xbb\xbf").split()) in (b"", b"[]")
    ):
        # An empty text file (a new file saved before anything was typed in it) holds no rows, and no
        # corrections either: read as such, it does not fail the run or stop a promotion.
        return pd.DataFrame({column: pd.Series(dtype=object) for column in LABEL_COLUMNS})
    if kind == "csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"label file {name} is not UTF-8 text (byte {exc.start}); save it as 'CSV UTF-8'"
            ) from None
        try:
            # Blank lines are skipped (before the header too), so they are not rows and not counted
            # in row_number.
            frame = pd.read_csv(io.StringIO(text), sep=csv_separator(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DatasetError(f"label file {name} is not a readable CSV: {_one_line(exc)}") from None
        _refuse_cut_last_row(name, text, frame, categories)
        # The review export puts a ' before a leading = + - @ (CSV injection): take it off again, so
        # ids and comments are the ones exported.
        frame = frame.map(restore_text)
    elif kind == "xlsx":
        try:
            frame = read_xlsx_frame(data)
        except NotXlsx as exc:
            raise DatasetError(f"label file {name} is not a readable XLSX workbook: {exc}") from None
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            # integer_object_nulls: an integer id column with a null must not become float (an id
            # past 2**53 would change).
            frame = pq.read_table(io.BytesIO(data)).to_pandas(integer_object_nulls=True)
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(
                f"label file {name} is not a readable Parquet file: {_one_line(exc)}"
            ) from None
    else:
        frame = parse_records(data, f"label file {name}")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [column for column in LABEL_COLUMNS if column not in frame.columns]
    if missing:
        hints = "".join(f"; {hint}" for hint in column_hints(missing, list(frame.columns)))
        raise DatasetError(
            f"label file {name}: required column(s) missing: {', '.join(missing)} "
            f"(found: {', '.join(frame.columns)}){hints}"
        )
    return frame


def _refuse_cut_last_row(
    name: str, text: str, frame: pd.DataFrame, categories: Sequence[str] | None = None
) -> None:
    """A CSV that ends without a line break in a row that is not a whole labelled row was cut (a copy
    still under way, a truncated upload), and every row after the cut is missing: the file is
    unreadable rather than a valid prefix trained on. The last row is cut when it has fewer fields
    than the header, or (given ``categories``) when its ``categoria`` is empty or not a class, which is
    where a cut inside or right before the last cell leaves it (``...,logi``). Spreadsheets and CSV
    writers end every row with a line break, so a whole file is never refused. (An unclosed quote at
    the end is refused by pandas already; JSON Lines whose last line does not parse, a JSON array not
    closed and a Parquet file without its footer are refused by their readers.)"""
    if not len(frame) or text.endswith(("\n", "\r")):
        return
    last: list[str] = []
    for row in csv.reader(io.StringIO(text), delimiter=csv_separator(text)):
        if row:
            last = row
    header = [str(c).strip() for c in frame.columns]
    why = None
    if len(last) < len(header):
        why = f"its last line has {len(last)} of {len(header)} fields"
    elif categories is not None and "categoria" in header:
        cell = last[header.index("categoria")]
        if canonical_categoria(cell, categories) not in categories:
            why = f"its last line's categoria {short(cell)} is not a class"
    if why:
        raise DatasetError(
            f"label file {name} ends in a cut row: {why} and the file does not end with a line break "
            "(still being copied, or truncated); copy the whole file again"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def label_rules(categories: Sequence[str]) -> list[Rule]:
    """The training rules that apply to a label file (it has no severidad, sentimiento, timestamp)."""
    return labelled_comment_rules(categories, "appears more than once in this file")


def _missing(value: object) -> bool:
    """None, NaN, or pandas' NA (a Parquet file written by pandas with nullable columns has those)."""
    return value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value))


def _id_text(value: object) -> str | None:
    """Ids are compared as text; a spreadsheet may hand them over as numbers."""
    if _missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _is_unlabelled(value: object) -> bool:
    return _missing(value) or str(value).strip() == ""


def check_label_file(name: str, frame: pd.DataFrame, categories: Sequence[str]):
    """(valid rows, rejected rows, unlabelled count) of one file, checked with Great Expectations."""
    frame = frame.assign(**{SOURCE_FILE: name, ROW_NUMBER: range(len(frame))})
    # astype: on a file with no rows, map gives an empty column of another type, and indexing with it
    # would pick columns instead of rows.
    unlabelled = frame["categoria"].map(_is_unlabelled).astype(bool)
    labelled = frame[~unlabelled].reset_index(drop=True)
    view = pd.DataFrame(
        {
            "id": labelled["id"].map(_id_text).astype(object),
            "comentario": text_or_null(labelled["comentario"]),
            "categoria": labelled["categoria"]
            .map(lambda v: canonical_categoria(v, categories))
            .astype(object),
        }
    )
    outcome = apply_rules(labelled.assign(_view_row=range(len(labelled))), view, label_rules(categories))
    valid = outcome.valid
    positions = valid.pop("_view_row").to_numpy()
    rows = pd.DataFrame(
        {
            "id": view["id"].to_numpy()[positions],
            "comentario": view["comentario"].to_numpy()[positions],
            "categoria": view["categoria"].to_numpy()[positions],
            SOURCE_FILE: valid[SOURCE_FILE].to_numpy(),
            ROW_NUMBER: valid[ROW_NUMBER].to_numpy(),
        }
    )
    return rows, outcome.rejected.drop(columns=["_view_row"]), int(unlabelled.sum())


def resolve_labels(per_file: Sequence[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """One row per id: the one from the file latest in name order (``per_file`` is in that order).

    Returns (winning rows, superseded rows as report rows, one line per id whose label changed).
    """
    columns = [*LABEL_COLUMNS, SOURCE_FILE, ROW_NUMBER]
    stacked = pd.concat([f[columns] for f in per_file], ignore_index=True) if per_file else pd.DataFrame()
    if stacked.empty:
        return pd.DataFrame(columns=columns), pd.DataFrame(), []
    winners = stacked.drop_duplicates("id", keep="last")
    losers = stacked.drop(winners.index)
    by_id = winners.set_index("id")
    reasons, differing = [], {}  # id -> the earlier files' labels that differ from the kept one
    for row in losers.itertuples(index=False):
        winner = by_id.loc[row.id]
        changed = row.categoria != winner["categoria"]
        what = (
            f"categoria {row.categoria} -> {winner['categoria']}"
            if changed
            else f"same categoria {row.categoria}"
        )
        reasons.append(f"id {short(row.id)} is labelled again in {winner[SOURCE_FILE]} ({what})")
        if changed:
            differing.setdefault(row.id, []).append(f"{row.source_file} says {row.categoria}")
    conflicts = [
        f"id {id_}: {', '.join(said)}, {by_id.loc[id_, SOURCE_FILE]} says {by_id.loc[id_, 'categoria']} (kept)"
        for id_, said in differing.items()
    ]
    superseded = losers.assign(rule=SUPERSEDED, reason=reasons)
    return winners.reset_index(drop=True), superseded.reset_index(drop=True), conflicts


def read_label_files(
    storage: Storage,
    location: str,
    unreadable: list[tuple[str, str]] | None = None,
    files: list[tuple[str, str]] | None = None,
    categories: Sequence[str] | None = None,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """(name, rows as written) of each label file at ``location``, in name order.

    A file that cannot be read raises :class:`DatasetError`; given an ``unreadable`` list, it is
    appended there as (name, why) instead and the other files are read. A storage error is raised
    either way (the task retries it).
    """
    fs, _ = storage.filesystem_for(location)
    for name, path in label_file_uris(storage, location) if files is None else files:
        try:
            frame = read_label_file(name, fs.cat_file(path), categories)
        except DatasetError as exc:
            if unreadable is None:
                raise
            unreadable.append((name, str(exc)))
            continue
        yield name, frame


def read_labels(
    storage: Storage, location: str | None, categories: Sequence[str], min_file_age: float = 0.0
) -> LabelSet:
    """Every label file at ``location`` read, checked and resolved into one row per id (files
    modified less than ``min_file_age`` seconds ago wait: :func:`split_by_age`)."""
    if location is None:
        return LabelSet.empty()
    valid, rejected, unlabelled, names = [], [], 0, []
    unreadable: list[tuple[str, str]] = []
    files, skipped = label_file_listing(storage, location)
    files, waiting = split_by_age(storage, location, files, min_file_age)
    for name, frame in read_label_files(storage, location, unreadable, files, categories):
        rows, bad, blank = check_label_file(name, frame, categories)
        valid.append(rows)
        rejected.append(bad)
        unlabelled += blank
        names.append(name)
    winners, superseded, conflicts = resolve_labels(valid)
    report = [frame for frame in (*rejected, superseded) if len(frame)]
    return LabelSet(
        rows=winners,
        rejected=pd.concat(report, ignore_index=True) if report else pd.DataFrame(),
        files=tuple(names),
        unlabelled=unlabelled,
        conflicts=tuple(conflicts),
        unreadable=tuple(unreadable),
        skipped=tuple(skipped),
        waiting=tuple(waiting),
    )


@task(
    name="load-labels",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
)
def load_labels(
    storage: Storage, setting: str, categories: Sequence[str], min_file_age: float = 0.0
) -> LabelSet:
    """The analysts' labels for this run (``--labels``), with a log line for everything left out."""
    logger = get_run_logger()
    location = labels_location(storage, setting)
    if location is None:
        logger.info("Labels: none (--labels none)")
        return LabelSet.empty()
    labels = read_labels(storage, location, categories, min_file_age)
    if labels.waiting:
        logger.warning(
            "Labels: %d file(s) modified less than --min-file-age %g s ago (may still be being copied) "
            "wait for the next training: %s",
            len(labels.waiting),
            min_file_age,
            ", ".join(labels.waiting),
        )
    if labels.skipped:
        logger.warning(
            "Labels: skipped %d file(s) whose name or folder starts with %s (temporary, marker or lock "
            "files; rename a label file that should be read): %s",
            len(labels.skipped),
            " ".join(repr(p) for p in SKIPPED_PREFIXES),
            ", ".join(labels.skipped),
        )
    for _, why in labels.unreadable:
        logger.error(
            "Not read, the run trains without it, does not promote the version and ends Failed: %s", why
        )
    if not labels.files:
        logger.info("Labels: no %slabel files under %s", "readable " if labels.unreadable else "", location)
        return labels
    rules = labels.rejected["rule"].value_counts().to_dict() if len(labels.rejected) else {}
    logger.info(
        "Labels: %d rows used from %d file(s) under %s; %d not labelled (categoria empty); %d left out %s",
        len(labels.rows),
        len(labels.files),
        location,
        labels.unlabelled,
        len(labels.rejected),
        rules or "",
    )
    for line in labels.conflicts[:20]:
        logger.warning("Conflicting labels: %s", line)
    if len(labels.conflicts) > 20:
        logger.warning("... and %d more conflicting ids (rejected_rows.parquet)", len(labels.conflicts) - 20)
    return labels
