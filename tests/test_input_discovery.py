"""Which files under the input folder become batches."""

from __future__ import annotations

from pathlib import Path


def test_hidden_files_and_folders_below_the_input_are_skipped(tmp_path):
    from tasks.batches import list_input_files
    from tasks.storage import Storage

    for rel in ["a.parquet", "_temporary/0/part-0.parquet", ".half.tmp", "day=1/b.parquet"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    _, found = list_input_files(Storage(str(tmp_path)), str(tmp_path))
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in found) == ["a.parquet", "day=1/b.parquet"]
