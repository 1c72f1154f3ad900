"""Scoring a batch again, and crashes at any point: every row ends up in the tables exactly once."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from helpers import Killed
from helpers import assert_exactly_once
from helpers import dataset_rows
from helpers import ledger_entry
from helpers import part_files
from helpers import read_table
from helpers import score
from helpers import write_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_scoring_a_batch_again_replaces_its_output(root, storage, shared_dataset):
    frame = dataset_rows(shared_dataset, 10, "r")
    frame.loc[2, "comentario"] = " "
    batch = write_batch(root, "again.parquet", frame)

    first = score(storage, batch, chunk_rows=4)
    second = score(storage, batch, chunk_rows=6)  # what rescore=True does: the same batch, scored anew

    assert (first.rows_predicted, second.rows_predicted) == (9, 9)
    preds, rejected = assert_exactly_once(root, batch.key, 10)
    assert len(preds) == 9 and len(rejected) == 1
    assert preds["scored_at"].nunique() == 1 and len(read_table(root, "reports/batches")) == 1


@pytest.mark.parametrize("crash_at", ["ledger", "second_predictions_part"])
def test_crash_then_rerun_scores_every_row_exactly_once(root, storage, shared_dataset, monkeypatch, crash_at):
    import tasks.scoring.score_file
    from tasks.scoring.discovery import scored_keys

    frame = dataset_rows(shared_dataset, 23, "k")
    frame.loc[1, "comentario"] = ""
    frame.loc[12, "id"] = None
    frame.loc[[6, 17], "id"] = "twice"
    batch = write_batch(root, "crash.parquet", frame)

    with monkeypatch.context() as patch:
        if crash_at == "ledger":
            import tasks.scoring.batch_writer

            def commit(*args, **kwargs):
                raise Killed("killed before the ledger entry")

            patch.setattr(tasks.scoring.batch_writer.BatchWriter, "commit", commit)
        else:
            import tasks.scoring.batch_writer

            real_write_part = tasks.scoring.batch_writer.write_part

            def write_part(storage_, table, when, key, part, data, **kwargs):
                if table == "predictions" and part == 1:
                    raise Killed("killed while writing part 1")
                return real_write_part(storage_, table, when, key, part, data, **kwargs)

            patch.setattr(tasks.scoring.batch_writer, "write_part", write_part)
        with pytest.raises(Killed):
            score(storage, batch, chunk_rows=5)

    assert batch.key not in scored_keys(storage), "a batch without its ledger entry must be scored again"
    if crash_at == "ledger":  # killed after its last part: the parts stay until the rerun removes them
        assert part_files(root, "predictions"), "the crashed run should have left its output behind"
    else:  # an exception half-way: the batch takes its partial output away with it
        assert not part_files(root, "predictions") and not part_files(root, "errors/rejected")

    result = score(storage, batch, chunk_rows=7)  # the rerun, even with other chunking

    assert (result.rows_in, result.rows_predicted, result.rows_rejected) == (23, 19, 4)
    preds, rejected = assert_exactly_once(root, batch.key, 23)
    assert len(preds) == 19 and len(rejected) == 4
    assert preds["scored_at"].nunique() == 1 and rejected["rejected_at"].nunique() == 1, (
        "parts of the crashed run survived"
    )
    assert len(read_table(root, "reports/batches")) == 1
    assert ledger_entry(root, batch.key)["rows_in"] == 23


def test_temp_file_of_a_killed_write_does_not_break_duckdb(root, storage, shared_dataset, monkeypatch):
    """A SIGKILL during ``Storage.open_write`` leaves its temporary file behind; after the rerun the
    documented DuckDB query (``read_parquet('<root>/predictions/**/*.parquet')``) must still work.

    The kill is simulated in-process: the write of predictions part 1 stops half-way, and the
    temporary file as it was at that moment (real name, partial bytes) is put back after the
    ``finally`` clause that a SIGKILL would never have run.
    """
    import tasks.store.tables

    frame = dataset_rows(shared_dataset, 8, "t").drop(columns=["categoria"])
    batch = write_batch(root, "tmp.parquet", frame)
    real_write_table = tasks.store.tables.pq.write_table
    calls, left_behind = [], {}

    def write_table(table, handle, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_write_table(table, handle, **kwargs)
        handle.write(b"PAR1\x15\x04\x15\x00")
        handle.flush()
        left_behind.update(
            {
                p: p.read_bytes()
                for p in (root / "predictions").rglob("*")
                if p.is_file() and p.name.startswith(".")
            }
        )
        raise Killed("SIGKILL while writing predictions part 1")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.store.tables.pq, "write_table", write_table)
        with pytest.raises(Killed):
            score(storage, batch, chunk_rows=4)
    assert len(left_behind) == 1, "expected one temporary file for the interrupted write"
    for path, data in left_behind.items():
        path.write_bytes(data)

    result = score(storage, batch, chunk_rows=4)  # the rerun

    assert result.rows_predicted == 8
    assert len(pd.read_parquet(root / "predictions")) == 8
    total = duckdb.sql(
        f"select count(*) from read_parquet('{root}/predictions/**/*.parquet', hive_partitioning=true)"
    ).fetchall()[0][0]
    assert total == 8


def test_a_failed_rescore_uncommits_the_batch(root, storage, shared_dataset, monkeypatch):
    """--rescore removes the ledger entry before the old output: if the rescore dies, the next run
    scores the batch again instead of skipping it with its output gone."""
    import tasks.scoring.score_file
    from tasks.scoring.discovery import scored_keys

    batch = write_batch(root, "again.parquet", dataset_rows(shared_dataset, 12, "r"))
    score(storage, batch)
    assert batch.key in scored_keys(storage)

    def boom(*args, **kwargs):
        raise Killed("the model broke")

    monkeypatch.setattr(tasks.scoring.score_file, "check_chunk", boom)
    with pytest.raises(Killed):
        score(storage, batch)
    assert batch.key not in scored_keys(storage)
    assert not part_files(root, "predictions")


@pytest.mark.parametrize("breaks", ["model", "chunk_rows"])
def test_a_rescore_that_fails_before_scoring_keeps_the_old_outputs(root, storage, shared_dataset, breaks):
    """Issue 22 item 4 (ordering): --rescore removes the committed outputs only under the claim and
    after the file, its ids and the model were read; a rescore failing on those changes nothing."""
    from flows.configs import ScoreConfig
    from helpers import MODEL_VERSION
    from tasks.scoring.discovery import read_ledger
    from tasks.scoring.score_file import ScoringSettings
    from tasks.scoring.score_file import score_file

    batch = write_batch(root, "again.parquet", dataset_rows(shared_dataset, 12, "keep"))
    score(storage, batch)
    before = (
        read_ledger(storage, batch.key),
        part_files(root, "predictions"),
        read_table(root, "predictions"),
    )
    settings = ScoreConfig().scoring_settings()
    if breaks == "model":
        version = "20990101T000000Z-missing"
    else:  # a number no reader can take (the CLI refuses it first; this is the last line of defence)
        version = MODEL_VERSION
        settings = ScoringSettings(**{**settings.__dict__, "chunk_rows": 99999999999999999999999})
    with pytest.raises(Exception):  # noqa: B017 - whatever the failure, nothing may be lost
        score_file(storage, batch, version, settings)
    assert read_ledger(storage, batch.key) == before[0], "the batch was un-committed"
    assert part_files(root, "predictions") == before[1]
    pd.testing.assert_frame_equal(read_table(root, "predictions"), before[2])
