"""Scale-out: the same 20 batches scored by the thread pool and by a local Dask cluster of 2 worker
processes give identical outputs (only the run timestamps differ)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from helpers import dataset_rows
from helpers import new_storage_root
from helpers import read_table
from helpers import write_batch

TIMES = ["scored_at", "scored_date", "rejected_at", "seconds"]


def _batches(root: Path, dataset: pd.DataFrame) -> None:
    for i in range(20):
        rows = dataset_rows(dataset, 60, prefix=f"b{i}", start=i * 20)
        if i % 5 == 0:  # some rows for the error report too
            rows.loc[rows.index[0], "comentario"] = "   "
        write_batch(root, f"batch-{i:02d}.parquet", rows)


def _table(root: Path, table: str, keys: list[str]) -> pd.DataFrame:
    frame = read_table(root, table)
    frame = frame.drop(columns=[c for c in TIMES if c in frame.columns])
    return frame.sort_values(keys).reset_index(drop=True)


@pytest.mark.e2e
def test_dask_cluster_gives_the_thread_pool_results(prefect_harness, model_store, shared_dataset, tmp_path):
    from flows.configs import ScoreConfig
    from flows.score import score_batches

    threads_root = new_storage_root(model_store, tmp_path / "threads")
    _batches(threads_root, shared_dataset)
    dask_root = new_storage_root(model_store, tmp_path / "dask")
    shutil.copytree(threads_root / "incoming", dask_root / "incoming")

    by_threads = score_batches(ScoreConfig(storage=str(threads_root), task_runner="threads", workers=2))
    by_dask = score_batches(ScoreConfig(storage=str(dask_root), task_runner="dask", workers=2))

    assert len(by_threads.scored) == len(by_dask.scored) == 20
    assert (by_dask.rows_in, by_dask.rows_predicted, by_dask.rows_rejected) == (1200, 1196, 4)
    keys = ["batch_key", "row_number"]
    pd.testing.assert_frame_equal(
        _table(threads_root, "predictions", keys), _table(dask_root, "predictions", keys)
    )
    pd.testing.assert_frame_equal(
        _table(threads_root, "errors/rejected", keys), _table(dask_root, "errors/rejected", keys)
    )
    ledger = sorted(p.name for p in (dask_root / "ledger").glob("*.json"))
    assert ledger == sorted(p.name for p in (threads_root / "ledger").glob("*.json")) and len(ledger) == 20
