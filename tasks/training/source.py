"""Fetch the training source (http(s) URL, local path or any fsspec URI) as a local file, and parse it.

The source is never held whole: a remote source is streamed to a local temporary file (a local one
is read in place), then parsed by :func:`tasks.common.records.parse_records`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import pandas as pd
from fsspec.implementations.local import LocalFileSystem
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from lstm_model.memory import release_freed_memory
from tasks.common.records import parse_records
from tasks.common.retries import retry_if_transient
from tasks.store.storage import Storage

_COPY_BLOCK = 8 << 20  # read and written at a time while streaming a remote source


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
                shutil.copyfileobj(remote, copy, _COPY_BLOCK)
        except BaseException:
            os.unlink(copy.name)
            raise
        found = SourceFile(copy.name, source, os.path.getsize(copy.name), temporary=True)
    get_run_logger().info("Read %s bytes from %s", f"{found.size:,}", source)
    return found


@task(name="parse-source")
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
