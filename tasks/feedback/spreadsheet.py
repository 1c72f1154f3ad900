"""Files an analyst opens in a spreadsheet and hands back: CSV made safe to open, and XLSX both ways.

**Why XLSX is the recommended form.** A spreadsheet guesses the type of every CSV field from the
user's locale: in a Spanish-locale LibreOffice or Excel ``.`` is the thousands separator, so a
confidence ``0.518`` opens as **518**; an id ``00123`` loses its zeros; a comment ``=1+1`` or
``=HYPERLINK(...)`` is evaluated as a formula (CSV injection). An XLSX cell carries its type:
numbers are numbers (shown with the user's decimal comma), dates are dates, and every text cell is
written as an inline string (``t="inlineStr"``), which no spreadsheet evaluates, whatever it starts
with (openpyxl would otherwise store a ``str`` starting with ``=`` as a formula: :func:`xlsx_bytes`
forces ``data_type = "s"``).

**The CSV, for those who need one**, is written so that opening it cannot run or mangle anything:

* every field quoted (``csv.QUOTE_ALL``), so line breaks and carriage returns inside a comment stay
  inside its field (a bare CR no longer splits a row);
* a text field starting with ``=``, ``+``, ``-``, ``@``, tab, CR (or LF) gets a leading ``'``
  (OWASP's advice against CSV injection): a spreadsheet shows it as text and evaluates nothing. The
  label reader removes that one quote again (:func:`restore_text`), so ids used as join keys
  (``-5``, ``=x``) come back exactly; a field that already started with ``'`` before such a
  character gets a second one, so the mapping is one-to-one. The price: a CSV label file *not*
  made from the export whose id or comment really starts with ``'=`` (``'+``, ...) loses that
  ``'``;
* no decimal numbers: the confidence is a whole percentage (``52``), which every locale reads the
  same way (a decimal point or comma would be read as a thousands separator by some locale).

What a CSV cannot prevent: a spreadsheet still reads an all-digit id such as ``00123`` as the
number 123 (LibreOffice es-ES, ``bench/spreadsheet_roundtrip.py``); such ids need the XLSX.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date
from datetime import datetime

import pandas as pd

# OWASP's list (= + - @ tab CR), and LF: spreadsheets turn a CR into a LF, so "'\r..." comes back as
# "'\n...", and a leading LF gets the quote too so that undoing it stays one-to-one.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
QUOTE = "'"


def _needs_quote(text: str) -> bool:
    return text.lstrip(QUOTE).startswith(FORMULA_START)


def neutralise_text(value: object) -> object:
    """A CSV text field that no spreadsheet evaluates: ``'`` before a leading ``= + - @`` tab or CR
    (and before any run of ``'`` that such a character follows, so :func:`restore_text` is exact)."""
    if isinstance(value, str) and _needs_quote(value):
        return QUOTE + value
    return value


def restore_text(value: object) -> object:
    """The field :func:`neutralise_text` was given (a cell read back from a CSV label file)."""
    if isinstance(value, str) and value.startswith(QUOTE) and _needs_quote(value[1:]):
        return value[1:]
    return value


def safe_csv_bytes(rows: pd.DataFrame, text_columns: Sequence[str]) -> bytes:
    """UTF-8 with a BOM (Excel then reads accents right), comma-separated, every field quoted, the
    ``text_columns`` neutralised; other columns must already be locale-proof (integers, ISO dates)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(rows.columns)
    texts = {rows.columns.get_loc(c) for c in text_columns if c in rows.columns}
    for record in rows.itertuples(index=False, name=None):
        writer.writerow(
            ("" if _blank(v) else neutralise_text(v) if i in texts else v) for i, v in enumerate(record)
        )
    return out.getvalue().encode("utf-8-sig")


def _blank(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value))


def _xlsx_text(value: object) -> str:
    """Text for a cell: characters XML 1.0 cannot hold (most C0 controls) become U+FFFD."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", str(value))


def xlsx_bytes(
    rows: pd.DataFrame,
    *,
    sheet: str,
    number_formats: dict[str, str],
    date_columns: Sequence[str] = (),
    widths: dict[str, float] | None = None,
) -> bytes:
    """One sheet: a bold, frozen header with a filter; columns in ``number_formats`` as numbers in that
    format, ``date_columns`` as dates (ISO text when a value is not a date), every other value as a
    text cell that is never evaluated."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)  # streams rows: memory does not grow with a long queue
    ws = book.create_sheet(sheet)
    ws.freeze_panes = "A2"
    for i, column in enumerate(rows.columns, start=1):
        ws.column_dimensions[get_column_letter(i)].width = (widths or {}).get(
            column, max(10, len(column) + 4)
        )
    header = []
    for column in rows.columns:
        cell = WriteOnlyCell(ws, value=str(column))
        cell.font = Font(bold=True)
        header.append(cell)
    ws.append(header)
    kinds = [
        "number" if c in number_formats else "date" if c in date_columns else "text" for c in rows.columns
    ]
    for record in rows.itertuples(index=False, name=None):
        cells = []
        for column, kind, value in zip(rows.columns, kinds, record, strict=True):
            cells.append(_cell(ws, WriteOnlyCell, kind, value, number_formats.get(column)))
        ws.append(cells)
    ws.auto_filter.ref = f"A1:{get_column_letter(max(1, len(rows.columns)))}{len(rows) + 1}"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(ws, cell_type, kind: str, value: object, number_format: str | None):
    if _blank(value) or (kind != "text" and value == ""):
        return cell_type(ws, value=None)
    if kind == "number":
        cell = cell_type(ws, value=float(value) if not isinstance(value, int) else value)
        cell.number_format = number_format
        return cell
    if kind == "date":
        parsed = _as_date(value)
        if parsed is not None:
            cell = cell_type(ws, value=parsed)
            cell.number_format = "yyyy-mm-dd"
            return cell
    cell = cell_type(ws, value=_xlsx_text(value))
    cell.data_type = "s"  # never a formula, whatever the text starts with
    return cell


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


class NotXlsx(ValueError):
    """The bytes are not a workbook openpyxl can read."""


def read_xlsx_frame(data: bytes) -> pd.DataFrame:
    """The first sheet as text columns, as the CSV reader gives them: the first non-empty row is the
    header, empty rows are skipped, empty cells are ``""``; numbers as written (``123``, not
    ``123.0``), dates as ISO text. Formulas give the value the spreadsheet last computed."""
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (BadZipFile, KeyError, OSError, ValueError) as exc:
        raise NotXlsx(" ".join(str(exc).split()) or type(exc).__name__) from None
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        lines = [] if sheet is None else [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        book.close()
    lines = [[_xlsx_cell_text(v) for v in line] for line in lines]
    lines = [line for line in lines if any(v != "" for v in line)]
    if not lines:
        return pd.DataFrame()
    header, *body = lines
    while header and header[-1] == "":  # formatted but empty columns on the right
        header.pop()
    width = len(header)
    body = [(line + [""] * width)[:width] for line in body]
    return pd.DataFrame(body, columns=header, dtype=object)


def _xlsx_cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
