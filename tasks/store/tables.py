"""The analyst-facing Parquet tables: where their partitions and parts live, and how they are written,
listed and read.

Every table is a hive-partitioned dataset under the storage root, partitioned by ``scored_date``
(UTC day of the run), so ``pandas.read_parquet(<root>/predictions)``, DuckDB's
``read_parquet('<root>/predictions/**/*.parquet', hive_partitioning=true)`` and Spark's
``spark.read.parquet`` all read one table. The schemas are the scoring job's
(:mod:`tasks.scoring.outputs`); this module owns the paths, so a change of partition scheme or part
name is made here and nowhere else.

File names carry the batch key (content hash) and the *fence* of the claim the writer held:
``<table>/scored_date=<day>/<key>-<fence>-<part>.parquet`` (the fence is the claim generation at
which that run took the batch, :attr:`tasks.scoring.claims.Claim.fence`). The key lets a rerun find what an
interrupted or replaced run of the same batch left behind, wherever (whatever day) it was written;
the fence tells whose part it is, so a run deletes only its own uncommitted parts, and a part of a
writer that lost its claim can be told from the current holder's (:mod:`tasks.scoring.reconcile`). Parts
written without a claim (tests, older versions) have no fence: ``<key>-<part>.parquet``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.store.layout import MISCLASSIFIED
from tasks.store.layout import PREDICTIONS
from tasks.store.layout import REJECTED
from tasks.store.layout import REVIEW
from tasks.store.layout import SUMMARIES
from tasks.store.layout import TABLES
from tasks.store.layout import UNREADABLE
from tasks.store.storage import Storage

__all__ = [  # the table names jobs pass to the functions below
    "MISCLASSIFIED",
    "PREDICTIONS",
    "REJECTED",
    "REVIEW",
    "SUMMARIES",
    "TABLES",
    "UNREADABLE",
]

PARTITION_KEY = "scored_date"

# <key>-<fence>-<part>.parquet, <key>-<part>.parquet, and open_write's temporary ".<name>.<hex>.tmp"
_PART = re.compile(
    r"^(?P<temp>\.)?(?P<key>[^-./]+)(?:-(?P<fence>\d{12}))?-\d{5,}\.parquet(?:\.[0-9a-f]+\.tmp)?$"
)


def partition_dir(table: str, when: datetime | date) -> str:
    return f"{table}/{PARTITION_KEY}={when:%Y-%m-%d}"


def part_name(batch_key: str, part: int, fence: str | None = None) -> str:
    if fence is None:
        return f"{batch_key}-{part:05d}.parquet"
    return f"{batch_key}-{fence}-{part:05d}.parquet"


@dataclass(frozen=True)
class PartName:
    """What a part's file name says: the batch, the fence of its writer, and whether it is a temporary file."""

    key: str
    fence: str | None  # None: written without a claim (or by a version before fences)
    temporary: bool


def parse_part(rel: str) -> PartName | None:
    """The batch key and writer's fence in a part's path, or None for a file that is not a part."""
    found = _PART.match(posixpath.basename(rel))
    if found is None:
        return None
    return PartName(found["key"], found["fence"], bool(found["temp"]))


def key_of(rel: str) -> str:
    """The batch key of a part file (its name also holds the writer's fence and the part number)."""
    part = parse_part(rel)
    return part.key if part else posixpath.basename(rel).rsplit("-", 1)[0]


def day_of(rel: str) -> str:
    """The ``scored_date`` (``YYYY-MM-DD``) of a part's partition."""
    return posixpath.basename(posixpath.dirname(rel)).removeprefix(f"{PARTITION_KEY}=")


def newest_first(parts: Iterable[str]) -> list[str]:
    """Part files ordered by partition (``scored_date=YYYY-MM-DD``) newest first, then by name."""
    by_name = sorted(parts)
    return sorted(by_name, key=lambda rel: posixpath.dirname(rel), reverse=True)


def write_part(
    storage: Storage,
    table: str,
    when: datetime,
    batch_key: str,
    part: int,
    data: pa.Table,
    *,
    fence: str | None = None,
    check: Callable[[], None] | None = None,
) -> str:
    """Write one part file of ``table`` (all-or-nothing for readers); returns its relative path.

    ``check`` (the claim's) runs after the bytes are written and just before they are published
    (local: the rename of the temporary file; S3: the PUT or the multipart upload's completion), so a
    writer that lost its claim while it was writing publishes nothing.
    """
    rel = f"{partition_dir(table, when)}/{part_name(batch_key, part, fence)}"
    with storage.open_write(rel, before_publish=check) as handle:
        pq.write_table(data, handle, compression="zstd")
    return rel


def table_parts(storage: Storage, table: str) -> list[str]:
    """Every published part file of ``table``, in every partition (relative paths)."""
    return storage.glob(f"{table}/{PARTITION_KEY}=*/*.parquet")


def parts_of(storage: Storage, batch_key: str = "", fence: str | None = None) -> list[str]:
    """Every part file any run wrote for this batch (all batches when ``batch_key`` is empty), in every
    table and partition, and the temporary files of writes that a killed run never finished; only
    those of writer ``fence`` when it is given."""
    prefix = f"{batch_key}-{fence}-" if fence else f"{batch_key}-" if batch_key else ""
    found: list[str] = []
    for table in TABLES:
        found += storage.glob(f"{table}/{PARTITION_KEY}=*/{prefix}*.parquet")
        found += storage.temp_files(f"{table}/{PARTITION_KEY}=*", prefix)
    return [rel for rel in found if parse_part(rel) is not None]


def read_part(storage: Storage, rel: str, columns: Sequence[str] | None = None) -> pa.Table:
    """One part file (only ``columns`` when given), read without loading the others."""
    with storage.fs.open(storage.path(rel), "rb") as handle:
        return pq.read_table(handle, columns=list(columns) if columns is not None else None)


def read_table(
    storage: Storage, table: str, columns: Sequence[str], since: date | None = None
) -> pa.Table | None:
    """``columns`` of the whole ``table`` plus its ``scored_date`` (only partitions on or after ``since``),
    or None when the table has no part yet."""
    import pyarrow.dataset as ds

    if not table_parts(storage, table):
        return None
    dataset = ds.dataset(
        storage.path(table),
        filesystem=storage.fs,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([(PARTITION_KEY, pa.string())]), flavor="hive"),
    )
    where = ds.field(PARTITION_KEY) >= since.isoformat() if since else None
    return dataset.to_table(columns=[*columns, PARTITION_KEY], filter=where)


def table_uri(storage: Storage, table: str) -> str:
    """The URI an analyst opens to read ``table``."""
    return storage.uri(table)
