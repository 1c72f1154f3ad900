"""Re-deliveries: a file at the same path with new content replaces that path's rows; the same content
under another name is scored once; content whose rows were replaced is scored again where it still is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import assert_exactly_once
from helpers import dataset_rows
from helpers import ledger_entry
from helpers import read_table
from helpers import write_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_flow(root: Path, **overrides):
    from flows.configs import ScoreConfig
    from flows.score import score_batches

    return score_batches(ScoreConfig(storage=str(root), **overrides))


def test_a_corrected_redelivery_replaces_the_old_rows(root, prefect_harness, shared_dataset):
    original = dataset_rows(shared_dataset, 10, "r")
    original.loc[3, "comentario"] = "  "  # one row the producer got wrong: rejected
    first_batch = write_batch(root, "day1/batch.parquet", original)
    copy = write_batch(root, "later/batch-copy.parquet", original)  # the same bytes under another name
    assert copy.key == first_batch.key

    first = run_flow(root)

    assert first.scored == ["day1/batch.parquet"]  # the copy's content is scored once, under one name
    assert first.skipped == {"later/batch-copy.parquet": "same content as day1/batch.parquet, already scored"}
    preds, rejected = assert_exactly_once(root, first_batch.key, 10)
    assert len(preds) == 9 and list(rejected["id"]) == ["r-3"]

    corrected = original.copy()
    corrected.loc[3, "comentario"] = "El pedido de cámara llegó dañado con FedEx en Lima."
    fixed = write_batch(root, "day1/batch.parquet", corrected)  # re-delivered under the same name

    second = run_flow(root)

    assert second.scored == ["day1/batch.parquet"]
    preds = read_table(root, "predictions")
    mine = preds[preds["batch"] == "day1/batch.parquet"]
    assert len(mine) == 10 and mine["id"].is_unique, "old and new rows of one file side by side"
    assert set(mine["batch_key"]) == {fixed.key}
    assert read_table(root, "errors/rejected").empty, "the old content's rejected row must go too"
    assert len(read_table(root, "reports/batches")) == 1
    assert_exactly_once(root, fixed.key, 10)
    # The ledger records the supersession: the old record is kept aside, naming its successor.
    assert ledger_entry(root, first_batch.key) is None
    assert ledger_entry(root, fixed.key)["supersedes"] == first_batch.key
    old = json.loads((root / "ledger" / "superseded" / f"{first_batch.key}.json").read_text())
    assert old["superseded_by"] == fixed.key and old["name"] == "day1/batch.parquet"
    # The copy still holds the old content, whose rows just left the tables: it is scored under its
    # own name (its producer delivered it; nothing it holds is lost).
    assert second.skipped == {}
    third = run_flow(root)
    assert third.scored == ["later/batch-copy.parquet"]
    assert read_table(root, "predictions").groupby("batch").size().to_dict() == {
        "later/batch-copy.parquet": 9,
        "day1/batch.parquet": 10,
    }

    write_batch(root, "later/batch-fixed.parquet", corrected)  # the new content under another name
    fourth = run_flow(root)
    assert fourth.scored == []
    assert fourth.skipped == {
        "later/batch-fixed.parquet": "same content as day1/batch.parquet, already scored"
    }
    fifth = run_flow(root)
    assert fifth.skipped == {} and fifth.unchanged == 3
