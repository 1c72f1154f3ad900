"""The one place that knows where bytes live: a local folder or any fsspec URI (``s3://bucket/prefix``).

Every task reads and writes through a :class:`Storage`, so local and S3 runs differ only in the root
URI (and, for S3-compatible stores, an endpoint URL). Credentials are never part of it: s3fs takes
them from the standard AWS sources (environment, profile, instance role).

Writes are all-or-nothing for readers: on a local disk a file is written under a hidden temporary
name and renamed into place; on object stores a single PUT (or a completed multipart upload) is
already atomic, so the object is written directly. Readers such as ``pyarrow.dataset`` ignore names
that start with ``.`` or ``_``, so temporary files never show up in a table.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import IO
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


def storage_options_for(uri: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """fsspec options for ``uri``: only the S3 endpoint is configurable; keys come from AWS's chain.

    Listings are never cached: other processes (Dask workers, the next run, whoever drops batches)
    write under the same prefixes, and s3fs's listings cache would hide their objects from
    ``glob``/``exists`` (a ledger entry not seen means a batch scored twice).
    """
    if not uri.startswith(("s3://", "s3a://")):
        return {}
    options: dict[str, Any] = {"use_listings_cache": False}
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    return options


@dataclass(frozen=True)
class Storage:
    root: str
    endpoint_url: str | None = None

    @cached_property
    def options(self) -> dict[str, Any]:
        return storage_options_for(self.root, self.endpoint_url)

    @cached_property
    def _fs_and_base(self) -> tuple[fsspec.AbstractFileSystem, str]:
        fs, base = fsspec.core.url_to_fs(self.root, **self.options)
        return fs, base.rstrip("/")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._fs_and_base[0]

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        """Path inside ``fs`` (no protocol), for fsspec and pyarrow calls that take a filesystem."""
        return posixpath.join(self._fs_and_base[1], *parts) if parts else self._fs_and_base[1]

    def uri(self, *parts: str) -> str:
        """Full URI, for pandas/DuckDB users and for log lines."""
        path = self.path(*parts)
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def filesystem_for(self, uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """The filesystem and path of any URI (a source file, an input folder), with this storage's
        S3 endpoint applied to ``s3://`` URIs: one object configures every place a run reads."""
        return fsspec.core.url_to_fs(uri, **storage_options_for(uri, self.endpoint_url))

    def open_uri(self, uri: str) -> IO[bytes]:
        """Open any URI (http(s), local, ``s3://``) for reading."""
        return fsspec.open(uri, "rb", **storage_options_for(uri, self.endpoint_url)).open()

    def write_uri(self, uri: str, data: bytes) -> None:
        """Write ``data`` to any URI outside the root (a file an analyst asked for), in one write."""
        fs, path = self.filesystem_for(uri)
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
        fs.pipe_file(path, data)

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self.open_write(rel) as handle:
            handle.write(data)

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    @contextmanager
    def open_write(self, rel: str) -> Iterator[IO[bytes]]:
        """Open ``rel`` for writing; the file appears under its name only if the block succeeds."""
        target = self.path(rel)
        parent = posixpath.dirname(target)
        if not self.is_local:
            # fsspec's file object commits (PUTs) on __exit__ even when the block raised, so it is
            # closed here only on success; on failure the buffer (and any multipart upload) is dropped.
            handle = self.fs.open(target, "wb")
            try:
                yield handle
            except BaseException:
                handle.discard()
                handle.closed = True  # nothing left to commit, not even from __del__
                raise
            handle.close()
            return
        self.fs.makedirs(parent, exist_ok=True)
        # Hidden, and not ending in the target's extension: readers that glob "*.parquet" (DuckDB
        # does not skip hidden files) never pick up a half-written file.
        temp = posixpath.join(parent, f".{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp")
        try:
            with self.fs.open(temp, "wb") as handle:
                yield handle
            self.fs.mv(temp, target)
        finally:
            if self.fs.exists(temp):
                self.fs.rm(temp)

    def temp_files(self, folder_pattern: str, name_prefix: str) -> list[str]:
        """Temporary files that a killed :meth:`open_write` left for targets starting ``name_prefix``."""
        return self.glob(f"{folder_pattern}/.{name_prefix}*.tmp")

    def glob(self, pattern: str) -> list[str]:
        """Paths (relative to the root) matching ``pattern``, sorted."""
        base = self.path()
        return sorted(posixpath.relpath(p, base) for p in self.fs.glob(self.path(pattern)))

    def delete(self, rel: str, *, recursive: bool = False) -> None:
        if self.fs.exists(self.path(rel)):
            self.fs.rm(self.path(rel), recursive=recursive)
