"""The one place that knows where bytes live: a local folder or any fsspec URI (``s3://bucket/prefix``).

Every task reads and writes through a :class:`Storage`, so local and S3 runs differ only in the root
URI (and, for S3-compatible stores, an endpoint URL). Credentials are never part of it: s3fs takes
them from the standard AWS sources (environment, profile, instance role).

Writes are all-or-nothing for readers: on a local disk a file is written under a hidden temporary
name and renamed into place; on object stores a single PUT (or a completed multipart upload) is
already atomic, so the object is written directly. Readers such as ``pyarrow.dataset`` ignore names
that start with ``.`` or ``_``, so temporary files never show up in a table.

Two more promises live here because they depend on what the store can do:

* **Create-only writes** (:meth:`Storage.create`): the write fails with ``FileExistsError`` when the
  name exists, atomically, even between machines. Locally a fully written temporary file is
  hard-linked to the name (``link`` never replaces); on S3 the PUT carries ``If-None-Match: *``
  (s3fs ``mode="create"``), which AWS S3, MinIO and moto refuse with 412 when the key exists.
* **Versions** (:class:`FileVersion`): what identifies a file's bytes without reading them, and
  reads that refuse any other bytes (:meth:`Storage.open_version`). On S3 the version is the ETag
  and s3fs pins every ranged GET to it (``If-Match``); locally it is the size, inode and the
  modification and change times to the nanosecond, checked when the file is opened and again when
  the reading is done (a writer cannot write without moving the change time).
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import IO
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class FileVersion:
    """One version of a file's bytes, as a listing shows it: size, a token that changes whenever the
    bytes may have (S3: the ETag; local: inode, mtime and ctime in ns) and the modification time."""

    size: int
    token: str
    mtime: float  # seconds since the epoch: how old the file is (--min-file-age)


class FileChanged(Exception):
    """The file is not the version that was listed (a writer is still at it, or it was replaced)."""


def _local_version(stat: os.stat_result) -> FileVersion:
    token = f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"
    return FileVersion(stat.st_size, token, stat.st_mtime)


def version_from_info(fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any]) -> FileVersion:
    """The version of a listed file, from its listing entry (S3) or a fresh ``stat`` (local disk)."""
    if isinstance(fs, LocalFileSystem):
        return _local_version(os.stat(path))
    modified = info.get("LastModified") or info.get("mtime")
    mtime = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
    token = str(info.get("ETag") or info.get("etag") or f"{info.get('size')}:{mtime}").strip('"')
    return FileVersion(int(info["size"]), token, mtime)


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

    def uri_of(self, listed_uri: str, path: str) -> str:
        """The URI of ``path``, a path that a listing of ``listed_uri`` returned (no protocol)."""
        fs, _ = self.filesystem_for(listed_uri)
        return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)

    def relative(self, uri: str) -> str | None:
        """``uri`` relative to this storage's root, or None when it lies elsewhere."""
        fs, path = self.filesystem_for(uri)
        if type(fs) is not type(self.fs) or not path.startswith(self.path() + "/"):
            return None
        return path[len(self.path()) + 1 :]

    def open_uri(self, uri: str) -> IO[bytes]:
        """Open any URI (http(s), local, ``s3://``) for reading."""
        return fsspec.open(uri, "rb", **storage_options_for(uri, self.endpoint_url)).open()

    def list_files(self, uri: str) -> tuple[str, dict[str, FileVersion]]:
        """The files under a folder (recursively), matching a glob, or the one file ``uri`` names,
        with their versions; and the root the relative names start from (the folder; for a glob,
        the folder above its first wildcard)."""
        fs, path = self.filesystem_for(uri)
        path = path.rstrip("/") or path
        if _GLOB_CHARS & set(path):
            found = fs.glob(path, detail=True)
            root = posixpath.dirname(path[: min(path.index(c) for c in _GLOB_CHARS if c in path)])
        elif fs.isdir(path):
            found, root = fs.find(path, detail=True), path
        elif fs.exists(path):
            found, root = {path: fs.info(path)}, posixpath.dirname(path)
        else:
            found, root = {}, path
        files: dict[str, FileVersion] = {}
        for name, info in sorted(found.items()):
            if info.get("type", "file") != "file":
                continue
            try:
                files[name] = version_from_info(fs, name, info)
            except FileNotFoundError:  # removed between the listing and its stat
                continue
        return root, files

    @contextmanager
    def open_version(self, uri: str, version: FileVersion | None) -> Iterator[IO[bytes]]:
        """Open ``uri`` for reading, refusing (:class:`FileChanged`) any bytes but ``version``'s.

        S3: the object opened must carry the listed ETag, and s3fs sends it with every ranged GET
        (``If-Match``), so a replaced object fails the read instead of mixing versions. Local disk:
        ``fstat`` of the open file must match the listed inode, size, mtime and ctime, when opened
        and again when the block ends (an append or rewrite in between moves them). ``None`` opens
        the file unchecked.
        """
        fs, path = self.filesystem_for(uri)
        if isinstance(fs, LocalFileSystem):
            with open(path, "rb") as handle:
                if version is not None:
                    _check_local(uri, version, os.fstat(handle.fileno()), "when opened")
                yield handle
                if version is not None:
                    _check_local(uri, version, os.fstat(handle.fileno()), "while it was read")
            return
        handle = fs.open(path, "rb")
        try:
            found = str(getattr(handle, "details", {}).get("ETag", "")).strip('"')
            if version is not None and found and found != version.token:
                raise FileChanged(
                    f"{uri} is not the version listed (ETag {found} instead of {version.token})"
                )
            try:
                yield handle
            except _FILE_EXPIRED as exc:
                raise FileChanged(f"{uri} was replaced while it was read") from exc
        finally:
            handle.close()

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

    def read_many(self, rels: Iterable[str]) -> dict[str, bytes]:
        """Several small files at once (concurrent GETs on S3); names that do not exist are left out."""
        paths = {self.path(rel): rel for rel in rels}
        if not paths:
            return {}
        found = self.fs.cat(list(paths), on_error="omit")
        return {paths[p]: data for p, data in found.items() if p in paths}

    def create(self, rel: str, data: bytes) -> None:
        """Write ``rel`` only if nothing exists under that name: ``FileExistsError`` otherwise.

        Atomic between processes and machines, and readers never see a partial file: locally a
        complete temporary file is hard-linked to the name (``link`` fails if the name exists,
        ``O_EXCL`` semantics with the content already in place); on S3 one PUT with
        ``If-None-Match: *`` (refused with 412 when the key exists).
        """
        target = self.path(rel)
        if self.is_local:
            parent = posixpath.dirname(target)
            os.makedirs(parent, exist_ok=True)
            temp = posixpath.join(parent, f".{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp")
            with open(temp, "wb") as handle:
                handle.write(data)
            try:
                os.link(temp, target)
            finally:
                os.unlink(temp)
        elif self.root.startswith(("s3://", "s3a://")):
            self.fs.pipe_file(target, data, mode="create")
        else:
            raise NotImplementedError(f"create-only writes are not supported on {self.root}")

    @contextmanager
    def open_write(
        self, rel: str, *, before_publish: Callable[[], None] | None = None
    ) -> Iterator[IO[bytes]]:
        """Open ``rel`` for writing; the file appears under its name only if the block succeeds.

        ``before_publish`` runs once the bytes are written and just before they become visible (the
        rename locally, the PUT or the multipart upload's completion on S3); if it raises, nothing is
        published. Scoring passes its claim's check, so the window in which a writer that lost its
        claim can still publish is one rename or one request long.
        """
        target = self.path(rel)
        parent = posixpath.dirname(target)
        if not self.is_local:
            # fsspec's file object commits (PUTs) on __exit__ even when the block raised, so it is
            # closed here only on success; on failure the buffer (and any multipart upload) is dropped.
            handle = self.fs.open(target, "wb")
            try:
                yield handle
                if before_publish is not None:
                    before_publish()
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
            if before_publish is not None:
                before_publish()
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


def _check_local(uri: str, version: FileVersion, stat: os.stat_result, when: str) -> None:
    found = _local_version(stat)
    if (found.size, found.token) != (version.size, version.token):
        raise FileChanged(
            f"{uri} changed {when} (size {found.size:,} bytes, listed {version.size:,}; "
            f"inode:mtime:ctime {found.token}, listed {version.token})"
        )


def _file_expired_errors() -> tuple[type[BaseException], ...]:
    try:
        from s3fs.utils import FileExpired
    except ImportError:  # s3fs not installed: only local storage
        return ()
    return (FileExpired,)


_FILE_EXPIRED = _file_expired_errors()
