"""The path index: what was last found at each input location, so unchanged files are never read again.

Content keys (SHA-256) are what make scoring exactly-once, but computing one means reading the whole
file. The index remembers, per file location, the version a run last saw there (size and ETag on S3;
size, inode, mtime and ctime locally) and the content key it had. A listing entry that matches its
index entry, whose key is committed in the ledger, is known without opening the file: an idle rerun
over a year of batches lists them and reads a few hundred bytes of index per file.

One small object per location (``ledger/by-path/<sha256 of the location>.json``), written after the
ledger entry it points to, so parallel runs never overwrite each other's records and a run killed in
between only costs the next run one read of that file. The index also gives a re-delivered file its
predecessor: the key whose rows the new content replaces.

A location is the file's path relative to the storage root when the input lies under it
(``incoming/day1/batch.parquet``: moving the storage folder or switching endpoints keeps the
index valid), else its full URI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Literal

from tasks.store.ledger import index_record
from tasks.store.ledger import index_records
from tasks.store.storage import FileVersion
from tasks.store.storage import Storage

PathStatus = Literal["scored", "unreadable", "duplicate"]


@dataclass(frozen=True)
class PathRecord:
    location: str
    name: str  # the file's name relative to its input root, as written in the batch column
    size: int
    token: str  # FileVersion.token of the version read
    key: str  # its content key
    status: PathStatus  # scored here, unreadable, or a copy of content scored under another name
    recorded_at: str
    reason: str | None = None  # why unreadable
    duplicate_of: str | None = None  # the name the content was scored under

    def matches(self, version: FileVersion) -> bool:
        return (self.size, self.token) == (version.size, version.token)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def location_of(storage: Storage, uri: str) -> str:
    return storage.relative(uri) or uri


def read_index(storage: Storage, locations: Iterable[str]) -> dict[str, PathRecord]:
    """The index entries of these locations (one listing, then one read per entry that exists)."""
    wanted = {index_record(location): location for location in locations}
    existing = index_records(storage) & set(wanted)
    records = {}
    for rel, data in storage.read_many(existing).items():
        record = PathRecord(**json.loads(data))
        if record.location == wanted[rel]:  # a hash prefix collision would be astronomically rare
            records[record.location] = record
    return records


def write_index(
    storage: Storage,
    *,
    location: str,
    name: str,
    version: FileVersion,
    key: str,
    status: PathStatus,
    reason: str | None = None,
    duplicate_of: str | None = None,
) -> None:
    record = PathRecord(
        location=location,
        name=name,
        size=version.size,
        token=version.token,
        key=key,
        status=status,
        recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        reason=reason,
        duplicate_of=duplicate_of,
    )
    storage.write_text(index_record(location), record.to_json())


def read_entry(storage: Storage, location: str) -> PathRecord | None:
    """The current index entry of one location (read fresh, under a claim)."""
    try:
        record = PathRecord(**json.loads(storage.read_bytes(index_record(location))))
    except FileNotFoundError:
        return None
    return record if record.location == location else None
