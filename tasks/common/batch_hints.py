"""What to do about a batch that cannot be scored: the second half of its one-line reason.

A reason such as ``not a readable Parquet file: Parquet magic bytes not found in footer`` is true
but leaves a person guessing. The usual causes are simple: a CSV or JSON export dropped into
``incoming/``, or a column named ``Comentario``. These helpers look at what the file is (its name
and first bytes) or at the columns it has, and say how to fix it. Plain functions (no Prefect, no
I/O beyond the bytes given): the reasons are built in :mod:`tasks.scoring.score_file`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

TEXT_EXTENSIONS = {
    ".csv": "CSV",
    ".tsv": "CSV",
    ".txt": "CSV",
    ".json": "JSON",
    ".jsonl": "JSON",
    ".ndjson": "JSON",
}
CONVERT = {
    "CSV": "pd.read_csv(f, dtype=str)",
    "JSON": "pd.read_json(f, lines=<True for JSON Lines>, dtype=False)",
    "Excel": "pd.read_excel(f, dtype=str)",
}


def looks_like(name: str, head: bytes) -> str | None:
    """ "CSV", "JSON" or "Excel" when the file is one of those (by its first bytes, then its name)."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        return "Excel" if posixpath.splitext(name)[1].lower() in (".xlsx", ".xls", ".xlsm", "") else None
    if text.startswith((b"{", b"[")):
        return "JSON"
    by_name = TEXT_EXTENSIONS.get(posixpath.splitext(name)[1].lower())
    if by_name:
        return by_name
    try:
        first = text.decode("utf-8").splitlines()[0] if text else ""
    except (UnicodeDecodeError, IndexError):
        return None
    return "CSV" if any(sep in first for sep in (",", ";", "\t")) else None


def not_parquet_hint(name: str, head: bytes) -> str | None:
    """``it looks like CSV, not Parquet: convert it ...`` for a CSV/JSON/Excel file, else None."""
    kind = looks_like(name, head)
    if kind is None:
        return None
    stem = posixpath.splitext(posixpath.basename(name))[0] or "batch"
    return (
        f"it looks like {kind}, not Parquet: convert it with pandas "
        f"(f = '{posixpath.basename(name)}'; {CONVERT[kind]}.to_parquet('{stem}.parquet', index=False)) "
        "and put the .parquet file in its place"
    )


def column_hints(missing: Sequence[str], found: Sequence[str]) -> list[str]:
    """``found Comentario: rename it to comentario`` for each missing column that is there under
    another case or with spaces around it."""
    hints = []
    for column in missing:
        near = [name for name in found if name != column and str(name).strip().casefold() == column]
        hints += [f"found {name!r}: rename it to {column}" for name in near]
    return hints
