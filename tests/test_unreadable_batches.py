"""Files that cannot be read as a batch: reported in errors/unreadable, left where they are, never retried
as "unreadable" when the fault is the storage's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from helpers import dataset_rows
from helpers import ledger_entry
from helpers import part_files
from helpers import read_table
from helpers import score
from helpers import write_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _without(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.drop(columns=[column])


@pytest.mark.parametrize(
    ("case", "expected_reason"),
    [
        ("text", "not a readable Parquet file"),
        ("zero_bytes", "not a readable Parquet file"),
        ("no_comentario", "required column(s) missing: comentario"),
        ("no_id", "required column(s) missing: id"),
    ],
)
def test_unreadable_batch_is_reported_and_left_in_place(root, storage, shared_dataset, case, expected_reason):
    rows = dataset_rows(shared_dataset, 4, "u")
    data = {
        "text": b"id,comentario\n1,hola\n",
        "zero_bytes": b"",
        "no_comentario": _without(rows, "comentario"),
        "no_id": _without(rows, "id"),
    }[case]
    batch = write_batch(root, "x.parquet", data)
    before = Path(batch.uri).read_bytes()

    result = score(storage, batch)

    assert result.status == "unreadable"
    assert expected_reason in result.reason
    unreadable = read_table(root, "errors/unreadable")
    assert len(unreadable) == 1
    row = unreadable.iloc[0]
    assert row["path"] == batch.uri and row["batch"] == "x.parquet" and row["batch_key"] == batch.key
    assert row["size_bytes"] == len(before) and expected_reason in row["reason"]
    assert Path(batch.uri).read_bytes() == before, "an unreadable batch must stay where it is, unchanged"
    assert ledger_entry(root, batch.key)["status"] == "unreadable"
    assert part_files(root, "predictions") == [] and part_files(root, "errors/rejected") == []


def test_parquet_with_columns_and_no_rows_is_scored_empty(root, storage, shared_dataset):
    empty = pa.Table.from_pandas(dataset_rows(shared_dataset, 4, "e"), preserve_index=False).slice(0, 0)
    batch = write_batch(root, "empty.parquet", empty)

    result = score(storage, batch)

    assert result.status == "scored" and result.reason is None
    assert (result.rows_in, result.rows_predicted, result.rows_rejected) == (0, 0, 0)
    summary = read_table(root, "reports/batches")
    assert len(summary) == 1
    assert summary.iloc[0]["batch"] == "empty.parquet" and summary.iloc[0]["rows_in"] == 0
    assert read_table(root, "errors/unreadable").empty
    assert ledger_entry(root, batch.key)["status"] == "scored"


def test_a_storage_error_while_opening_is_not_unreadable(root, storage, shared_dataset):
    """A file that vanished (or an S3 outage) raises, so Prefect retries; it is not recorded as unreadable."""
    from tasks.scoring.discovery import scored_keys

    batch = write_batch(root, "gone.parquet", dataset_rows(shared_dataset, 4, "g"))
    Path(batch.uri).unlink()
    with pytest.raises(FileNotFoundError):
        score(storage, batch)
    assert batch.key not in scored_keys(storage) and not part_files(root, "errors/unreadable")


def test_duplicate_column_names_make_a_batch_unreadable(root, storage, shared_dataset):
    rows = dataset_rows(shared_dataset, 4, "dup")
    table = pa.Table.from_arrays(
        [pa.array(rows["id"]), pa.array(rows["comentario"]), pa.array(rows["comentario"].str.upper())],
        names=["id", "comentario", "comentario"],
    )
    batch = write_batch(root, "dup.parquet", table)

    result = score(storage, batch)

    assert result.status == "unreadable" and result.reason.startswith("duplicate column name(s): comentario")
    assert read_table(root, "errors/unreadable")["reason"].tolist() == [result.reason]
    assert ledger_entry(root, batch.key)["status"] == "unreadable" and not part_files(root, "predictions")


def test_a_page_that_cannot_be_decoded_half_way_makes_the_batch_unreadable(root, storage, shared_dataset):
    """Bad bytes never heal: the batch is reported once (errors/unreadable), its partial output removed,
    instead of failing (and being retried) on every run."""
    import io

    import pyarrow.parquet as pq

    rows = pa.Table.from_pandas(dataset_rows(shared_dataset, 40, "page"), preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(rows, sink, row_group_size=10, compression="snappy")
    data = bytearray(sink.getvalue())
    page = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(2).column(0)
    for i in range(page.data_page_offset + 10, page.data_page_offset + page.total_compressed_size):
        data[i] = (data[i] * 7 + 13) % 256  # the third row group's id page is garbage
    batch = write_batch(root, "page.parquet", bytes(data))

    result = score(storage, batch, chunk_rows=10)

    assert result.status == "unreadable", result
    assert not part_files(root, "predictions") and not part_files(root, "errors/rejected")
    assert ledger_entry(root, batch.key)["status"] == "unreadable"
    assert len(read_table(root, "errors/unreadable")) == 1
