"""Fetch the training source (http(s) URL, local path or any fsspec URI) and parse it into a frame.

Memory stays well below the size of the Python objects a source would make: a 200 MB file must not
cost gigabytes before training starts. So the source is never held whole: a remote source is
streamed to a local temporary file (a local one is read in place); JSON Lines are parsed by Arrow's
JSON reader straight into columns; a JSON array is first rewritten, object by object, as JSON
Lines in a temporary file (a streaming parse that never holds more than a few records). Values stay
as given: the dataset's text columns are read as text (Arrow would otherwise turn ISO dates into
timestamps), numbers as numbers; a file Arrow refuses (a column mixing numbers and text, a broken
line) is parsed again line by line, which keeps mixed values as they are and names the bad line.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json
from fsspec.implementations.local import LocalFileSystem
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.memory import release_freed_memory
from tasks.retries import retry_if_transient
from tasks.schema import COLUMNS
from tasks.storage import Storage
from tasks.validation import DatasetError

TEXT_COLUMNS = [c for c in COLUMNS if c != "sentimiento"]  # read as text whatever they look like
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_BLOCK = 8 << 20
_LONGEST_RECORD = 16 << 20  # an undecodable stretch longer than this is an error, not a cut record


@dataclass(frozen=True)
class SourceFile:
    """The source as a local file: the source itself when local, else a temporary copy."""

    path: str
    name: str  # the source as given, for messages
    size: int
    temporary: bool  # a copy made by fetch_source, removed once parsed


@task(
    name="fetch-source",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_if_transient,
)
def fetch_source(storage: Storage, source: str) -> SourceFile:
    """The source as a local file, streamed to a temporary copy when remote; hiccups are retried."""
    fs, path = storage.filesystem_for(source)
    if isinstance(fs, LocalFileSystem):
        found = SourceFile(path, source, os.path.getsize(path), temporary=False)
    else:
        copy = tempfile.NamedTemporaryFile(prefix="comentarios-source-", delete=False)
        try:
            with copy, storage.open_uri(source) as remote:
                shutil.copyfileobj(remote, copy, _BLOCK)
        except BaseException:
            os.unlink(copy.name)
            raise
        found = SourceFile(copy.name, source, os.path.getsize(copy.name), temporary=True)
    get_run_logger().info("Read %s bytes from %s", f"{found.size:,}", source)
    return found


@task(name="parse-source", cache_policy=NO_CACHE)
def parse_source(source: SourceFile) -> pd.DataFrame:
    try:
        frame = parse_records(source.path, source.name)
    finally:
        if source.temporary:
            os.unlink(source.path)
    # The JSON reader's blocks and the array-to-lines pass leave freed pages in Arrow's pool and
    # glibc's arenas (about 180 MB on a 238 MB array): give them back before validation allocates.
    release_freed_memory()
    get_run_logger().info("Parsed %d records with columns %s", len(frame), list(frame.columns))
    return frame


def parse_records(data: bytes | str | os.PathLike, name: str) -> pd.DataFrame:
    """A JSON array of objects or JSON Lines (bytes or a file path) -> DataFrame, values as given."""
    with _binary(data) as handle:
        first, start = _first_character(handle, name)
        if first == "{":
            handle.seek(start)
            return _read_lines(handle, name)
        with tempfile.TemporaryFile(prefix="comentarios-lines-") as lines:
            handle.seek(start)
            _array_to_lines(handle, lines, name)
            lines.seek(0)
            return _read_lines(lines, name)


@contextmanager
def _binary(data: bytes | str | os.PathLike) -> Iterator[IO[bytes]]:
    if isinstance(data, bytes | bytearray):
        yield io.BytesIO(data)
    else:
        with open(data, "rb") as handle:
            yield handle


def _first_character(handle: IO[bytes], name: str) -> tuple[str, int]:
    """The first character after a BOM and whitespace ('[' or '{') and its byte offset."""
    head = handle.read(3)
    offset = 3 if head == b"\xef\xbb\xbf" else 0
    handle.seek(offset)
    line = 1
    while block := handle.read(1 << 16):
        stripped = block.lstrip(b" \t\r\n")
        line += block[: len(block) - len(stripped)].count(b"\n")
        if stripped:
            if stripped[:1] in (b"[", b"{"):
                return stripped[:1].decode(), offset + len(block) - len(stripped)
            raise DatasetError(f"{name} is not JSON or JSON Lines: expected '[' or '{{' at line {line}")
        offset += len(block)
    raise DatasetError(f"{name} is empty")


def _array_to_lines(handle: IO[bytes], out: IO[bytes], name: str) -> None:
    """Copy the objects of a JSON array to ``out``, one per line, holding a few records at a time.

    A raw newline in a JSON text can only be whitespace between tokens (inside strings it must be
    escaped), so replacing it by a space puts each object on one line without changing it.
    """
    reader = io.TextIOWrapper(handle, encoding="utf-8", newline="")
    decoder = json.JSONDecoder()
    text, pos, lines_before = "", 0, 0
    eof = False

    def more() -> bool:
        nonlocal text, pos, lines_before, eof
        if eof:
            return False
        lines_before += text.count("\n", 0, pos)
        chunk = _read_text(reader, name)
        eof = not chunk
        text, pos = text[pos:] + chunk, 0
        return not eof

    def fail(message: str, at: int) -> DatasetError:
        line = lines_before + text.count("\n", 0, at) + 1
        return DatasetError(f"{name} is not JSON or JSON Lines: {message} at line {line}")

    def skip_whitespace() -> str:
        nonlocal pos
        while True:
            pos = _WHITESPACE.match(text, pos).end()
            if pos < len(text):
                return text[pos]
            if not more():
                raise fail("the array is not closed", pos)

    more()
    pos = 1  # past "["
    count = 0
    while True:
        if skip_whitespace() == "]" and count == 0:
            break
        if count:
            separator = skip_whitespace()
            if separator == "]":
                break
            if separator != ",":
                raise fail("expected ',' or ']'", pos)
            pos += 1
            skip_whitespace()
        while True:
            try:
                record, end = decoder.raw_decode(text, pos)
                break
            except json.JSONDecodeError as exc:
                error = fail(exc.msg, exc.pos)  # a record cut by the block's end, or a real error
                if len(text) - pos > _LONGEST_RECORD or not more():
                    raise error from None
        if not isinstance(record, dict):
            raise DatasetError(f"{name} must hold a list of JSON objects (one per comment)")
        out.write(text[pos:end].replace("\n", " ").replace("\r", " ").encode() + b"\n")
        pos, count = end, count + 1
    pos += 1  # past "]": only whitespace may follow
    while True:
        pos = _WHITESPACE.match(text, pos).end()
        if pos < len(text):
            raise fail("extra data after the array", pos)
        if not more():
            break
    if count == 0:
        raise DatasetError(f"{name} holds no records")


def _read_text(reader: io.TextIOWrapper, name: str) -> str:
    try:
        return reader.read(_BLOCK)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def _read_lines(handle: IO[bytes], name: str) -> pd.DataFrame:
    """JSON Lines -> DataFrame with Arrow's reader; what it refuses, line by line in Python."""
    start = handle.tell()
    schema = pa.schema([(column, pa.string()) for column in TEXT_COLUMNS])
    try:
        table = pa_json.read_json(
            handle,
            read_options=pa_json.ReadOptions(block_size=_BLOCK),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        handle.seek(start)
        return _read_lines_in_python(handle, name)
    if table.num_rows == 0:
        raise DatasetError(f"{name} holds no records")
    handle.seek(start)
    all_null = [c for c in TEXT_COLUMNS if table[c].null_count == table.num_rows]
    named = _top_level_keys(handle, all_null) if all_null else set()
    absent = [c for c in all_null if c not in named]
    return table.drop_columns(absent).to_pandas()


def _top_level_keys(handle: IO[bytes], columns: list[str]) -> set[str]:
    """Which of ``columns`` some record of the file names (the explicit schema adds absent columns as
    nulls, so a column null in every row may be absent or present and empty).

    One pass; only lines holding a quoted name are parsed, so a nested key (``{"rows": [{"id": ...}]}``)
    does not count. A line that does not parse as one record (Arrow also reads two records on a line,
    or records split by a lone CR) counts for every name it holds, as a plain text match would.
    """
    quoted = {column: f'"{column}"'.encode() for column in columns}
    found: set[str] = set()
    start = handle.tell()
    try:
        for line in handle:
            here = [c for c in columns if c not in found and quoted[c] in line]
            if not here:
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                record = None
            found.update(c for c in here if not isinstance(record, dict) or c in record)
            if len(found) == len(columns):
                break
        return found
    finally:
        handle.seek(start)


def _read_lines_in_python(handle: IO[bytes], name: str, chunk: int = 50_000) -> pd.DataFrame:
    """The slow path, for files Arrow refuses: values exactly as ``json`` gives them, errors by line."""
    reader = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    frames, records = [], []
    try:
        for number, line in enumerate(reader, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{name} is not JSON or JSON Lines: {exc.msg} at line {number}") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{name} must hold a list of JSON objects (one per comment)")
            records.append(record)
            if len(records) == chunk:
                frames.append(pd.DataFrame.from_records(records))
                records = []
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if records:
        frames.append(pd.DataFrame.from_records(records))
    if not frames:
        raise DatasetError(f"{name} holds no records")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
