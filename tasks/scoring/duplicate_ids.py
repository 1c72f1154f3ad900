"""The file-wide ``id`` uniqueness check of a batch, in memory that does not grow with the file."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.common.validation import NOT_SPACE
from tasks.common.validation import ROW
from tasks.common.validation import Check
from tasks.common.validation import Rule
from tasks.common.validation import failing_rows
from tasks.scoring.chunk_checks import as_text


def _id_chunks(parquet: pq.ParquetFile, chunk_rows: int) -> Iterator[tuple[int, pa.Array]]:
    first = 0
    for chunk in parquet.iter_batches(batch_size=chunk_rows, columns=["id"]):
        yield first, as_text(chunk.column(0))
        first += chunk.num_rows


def duplicate_rows(parquet: pq.ParquetFile, chunk_rows: int) -> set[int]:
    """Positions of rows whose id appears more than once anywhere in the file.

    Memory does not grow with the file: the ``id`` column is streamed, each id is reduced to a
    64-bit hash, and the hashes are checked for uniqueness by GX one hash bucket at a time, with as
    many buckets (passes over the id column) as it takes to keep each near ``4 * chunk_rows`` rows.
    Equal ids always share a bucket. A hash collision could only add candidates, so candidates are
    then checked against their real ids in one more streamed pass: the result is exact.
    """
    buckets = max(1, math.ceil(parquet.metadata.num_rows / (4 * chunk_rows)))
    rule = Rule("id_duplicate", "id_hash", (Check("ExpectColumnValuesToBeUnique"),), str)
    candidates: set[int] = set()
    for bucket in range(buckets):
        hashes, rows = [], []
        for first, ids in _id_chunks(parquet, chunk_rows):
            # null, empty and blank ids are id_missing, not duplicates of each other
            present = np.flatnonzero(
                pc.fill_null(pc.match_substring_regex(ids, NOT_SPACE), False).to_numpy(zero_copy_only=False)
            )
            values = ids.take(pa.array(present)).to_numpy(zero_copy_only=False)
            hashed = pd.util.hash_array(values, categorize=False)
            mine = hashed % np.uint64(buckets) == bucket
            hashes.append(hashed[mine])
            rows.append(present[mine] + first)
        view = pd.DataFrame(
            {
                "id_hash": np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
                ROW: np.concatenate(rows) if rows else np.zeros(0, np.int64),
            }
        )
        candidates |= failing_rows(view, [rule])["id_duplicate"]
    if not candidates:
        return set()
    wanted = np.array(sorted(candidates), dtype=np.int64)
    seen: dict[str, list[int]] = {}
    for first, ids in _id_chunks(parquet, chunk_rows):
        local = wanted[(wanted >= first) & (wanted < first + len(ids))] - first
        for row, value in zip(local.tolist(), ids.take(pa.array(local)).to_pylist(), strict=True):
            seen.setdefault(value, []).append(first + row)
    return {row for positions in seen.values() if len(positions) > 1 for row in positions}
