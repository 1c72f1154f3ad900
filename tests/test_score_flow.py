"""The ``score-batches`` flow under Prefect: unreadable files, reruns, changed files, rescore, a real kill.

Flow runs cost seconds each, so there are few of them (six in all) and each checks a lot; the
row-level rules are covered by ``test_row_rules.py`` and its neighbours through ``score_file``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from helpers import LABELS
from helpers import assert_exactly_once
from helpers import dataset_rows
from helpers import ledger_entry
from helpers import part_files
from helpers import read_table
from helpers import write_batch

REPO = Path(__file__).resolve().parents[1]
BAD_TEXT = b"id,comentario\n1,esto es un CSV y no un Parquet\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_flow(root: Path, **overrides):
    from flows.configs import ScoreConfig
    from flows.score import score_batches

    return score_batches(ScoreConfig(storage=str(root), **overrides))


def counts_by_key(root: Path, table: str = "predictions") -> dict[str, int]:
    frame = read_table(root, table)
    return frame.groupby("batch_key").size().to_dict() if len(frame) else {}


# --------------------------------------------------------------------------------------------------
# 2-4 (and 8-9): unreadable files next to good ones
# --------------------------------------------------------------------------------------------------


def test_unreadable_files_fail_the_run_after_every_good_batch_is_written(
    root, prefect_harness, shared_dataset
):
    from flows.score import BatchesFailed
    from tasks.scoring.outputs import predictions_schema

    good = dataset_rows(shared_dataset, 30, "g1")
    good.loc[4, "comentario"] = "   "
    no_pais = dataset_rows(shared_dataset, 20, "g2", start=40).drop(columns=["pais"])
    no_pais["vendedor"] = pd.Series([f"v{i}" for i in range(20)], dtype=object)
    batches = {
        "a_good.parquet": write_batch(root, "a_good.parquet", good),
        "b_no_pais.parquet": write_batch(root, "b_no_pais.parquet", no_pais),
        "x.parquet": write_batch(root, "x.parquet", BAD_TEXT),
        "zero.parquet": write_batch(root, "zero.parquet", b""),
        "no_comentario.parquet": write_batch(
            root, "no_comentario.parquet", good.drop(columns=["comentario"])
        ),
        "no_rows.parquet": write_batch(
            root, "no_rows.parquet", pa.Table.from_pandas(good, preserve_index=False).slice(0, 0)
        ),
    }
    originals = {name: Path(b.uri).read_bytes() for name, b in batches.items()}

    with pytest.raises(BatchesFailed) as raised:
        run_flow(root, chunk_rows=8)

    message = str(raised.value)
    assert message.startswith("3 batch(es) not scored")
    for bad in ("x.parquet", "zero.parquet", "no_comentario.parquet"):
        assert f"{bad}: unreadable" in message
    assert (
        "a_good.parquet" not in message
        and "b_no_pais.parquet" not in message
        and "no_rows.parquet" not in message
    )
    assert "comentario" in message.split("no_comentario.parquet: unreadable")[1].split(";")[0]

    # The good batches are all scored and written, exactly once.
    assert_exactly_once(root, batches["a_good.parquet"].key, 30)
    preds_b, _ = assert_exactly_once(root, batches["b_no_pais.parquet"].key, 20)
    assert len(preds_b) == 20
    for name in ("a_good.parquet", "b_no_pais.parquet", "no_rows.parquet"):
        assert ledger_entry(root, batches[name].key)["status"] == "scored", name
    summaries = read_table(root, "reports/batches").set_index("batch")
    assert (
        summaries.loc["no_rows.parquet", "rows_in"] == 0 and summaries.loc["a_good.parquet", "rows_in"] == 30
    )
    assert "x.parquet" not in summaries.index

    # Unreadable: path and reason reported; the files stay where they were, unchanged.
    unreadable = read_table(root, "errors/unreadable").set_index("batch")
    assert sorted(unreadable.index) == ["no_comentario.parquet", "x.parquet", "zero.parquet"]
    for name in unreadable.index:
        assert unreadable.loc[name, "path"] == batches[name].uri
        assert unreadable.loc[name, "size_bytes"] == len(originals[name])
    assert (
        "Parquet" in unreadable.loc["x.parquet", "reason"]
        and "Parquet" in unreadable.loc["zero.parquet", "reason"]
    )
    assert "comentario" in unreadable.loc["no_comentario.parquet", "reason"]
    for name, data in originals.items():
        assert Path(batches[name].uri).read_bytes() == data, f"{name} was moved or changed"

    # One table for analysts, whatever columns a batch had (pandas and DuckDB agree).
    preds = pd.read_parquet(root / "predictions")
    assert list(preds.columns) == [*predictions_schema(LABELS).names, "scored_date"]
    assert preds.loc[preds["batch"] == "b_no_pais.parquet", "pais"].isna().all()
    assert preds.loc[preds["batch"] == "a_good.parquet", "pais"].notna().all()
    assert preds.loc[preds["batch"] == "b_no_pais.parquet", "extra_columns"].str.contains('"vendedor"').all()
    duck = duckdb.sql(
        f"select categoria_pred, count(*) from read_parquet('{root}/predictions/**/*.parquet', hive_partitioning=true) group by 1"
    ).fetchall()
    assert dict(duck) == preds.groupby("categoria_pred").size().to_dict()
    assert sum(n for _, n in duck) == 29 + 20
    rejected = pd.read_parquet(root / "errors" / "rejected")
    assert list(rejected["rule"]) == ["comentario_blank"] and "whitespace" in rejected["reason"].iloc[0]


# --------------------------------------------------------------------------------------------------
# 6: a rerun adds nothing; a changed file is new; rescore replaces
# --------------------------------------------------------------------------------------------------


def test_rerun_changed_file_and_rescore(root, prefect_harness, shared_dataset):
    a = dataset_rows(shared_dataset, 16, "a")
    b = dataset_rows(shared_dataset, 10, "b", start=30)
    b.loc[3, "id"] = None
    batch_a = write_batch(root, "a.parquet", a)
    batch_b = write_batch(root, "b.parquet", b)
    empty = write_batch(root, "empty.parquet", pa.Table.from_pandas(a, preserve_index=False).slice(0, 0))

    first = run_flow(root, chunk_rows=5)  # a 0-row batch is no failure: the run returns normally

    assert sorted(first.scored) == ["a.parquet", "b.parquet", "empty.parquet"]
    assert (first.rows_in, first.rows_predicted, first.rows_rejected) == (26, 25, 1)
    assert first.unreadable == {} and first.failed == {}
    assert counts_by_key(root) == {batch_a.key: 16, batch_b.key: 9}
    assert ledger_entry(root, empty.key)["rows_in"] == 0
    first_scored_at = read_table(root, "predictions")["scored_at"].max()

    second = run_flow(root, chunk_rows=5)  # nothing new

    assert second.scored == [] and second.rows_in == 0
    assert counts_by_key(root) == {batch_a.key: 16, batch_b.key: 9}
    assert counts_by_key(root, "errors/rejected") == {batch_b.key: 1}
    assert len(read_table(root, "reports/batches")) == 3

    changed = pd.concat([b, dataset_rows(shared_dataset, 4, "b-new", start=60)], ignore_index=True)
    batch_b2 = write_batch(root, "b.parquet", changed)  # same name, new content: a corrected re-delivery
    assert batch_b2.key != batch_b.key

    third = run_flow(root, chunk_rows=5)

    # The new content replaces the old one's rows (issue 14: before, both were kept side by side).
    assert third.scored == ["b.parquet"] and third.rows_in == 14
    assert counts_by_key(root) == {batch_a.key: 16, batch_b2.key: 13}
    assert counts_by_key(root, "errors/rejected") == {batch_b2.key: 1}
    assert_exactly_once(root, batch_b2.key, 14)
    assert (
        ledger_entry(root, batch_b.key) is None
        and ledger_entry(root, batch_b2.key)["supersedes"] == batch_b.key
    )
    superseded = json.loads((root / "ledger" / "superseded" / f"{batch_b.key}.json").read_text())
    assert superseded["superseded_by"] == batch_b2.key and superseded["name"] == "b.parquet"

    fourth = run_flow(root, chunk_rows=3, rescore=True)

    assert sorted(fourth.scored) == ["a.parquet", "b.parquet", "empty.parquet"]
    assert counts_by_key(root) == {batch_a.key: 16, batch_b2.key: 13}, "rescore must replace, not add"
    assert counts_by_key(root, "errors/rejected") == {batch_b2.key: 1}
    assert_exactly_once(root, batch_a.key, 16)
    assert_exactly_once(root, batch_b2.key, 14)
    summaries = read_table(root, "reports/batches")
    assert summaries.groupby("batch_key").size().to_dict() == {batch_a.key: 1, batch_b2.key: 1, empty.key: 1}
    preds = read_table(root, "predictions")
    rescored = preds[preds["batch_key"].isin([batch_a.key, batch_b2.key])]
    assert rescored.groupby("batch_key")["scored_at"].nunique().to_dict() == {
        batch_a.key: 1,
        batch_b2.key: 1,
    }, "rows of the replaced output survived the rescore"
    assert (rescored["scored_at"] > first_scored_at).all()


# --------------------------------------------------------------------------------------------------
# 7: a real kill (SIGKILL of `comentarios score` mid-batch), then a rerun: exactly once
# --------------------------------------------------------------------------------------------------


def test_killed_cli_run_then_rerun_scores_every_row_exactly_once(
    root, prefect_harness, shared_dataset, tmp_path
):
    rows = 20_000
    big = pd.concat([shared_dataset] * (rows // len(shared_dataset)), ignore_index=True).astype(object)
    big["id"] = [f"big-{i}" for i in range(rows)]
    big.loc[[7, 4_321, 15_000], "comentario"] = ""
    big.loc[[10, 19_999], "id"] = "twice"
    batch = write_batch(root, "big.parquet", big)
    predictions = root / "predictions"

    env = os.environ.copy()
    env.pop("PREFECT_API_URL", None)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    log = (tmp_path / "cli.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "score", "--storage", str(root), "--chunk-rows", "1000"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if part_files(root, "predictions"):
                break
            time.sleep(0.05)
        still_running = proc.poll() is None
        waited = time.monotonic() - (deadline - 180)
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its ephemeral Prefect server: its own session
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
    output = (tmp_path / "cli.log").read_text(errors="replace")[-3000:]
    assert still_running, f"the CLI ended (or never wrote a part) before it could be killed:\n{output}"
    assert predictions.exists() and part_files(root, "predictions"), output
    assert ledger_entry(root, batch.key) is None, f"the run finished before the kill:\n{output}"
    partial = len(read_table(root, "predictions"))
    print(f"killed after {waited:.1f}s with {partial} rows predicted")
    assert 0 < partial < rows - 5

    summary = run_flow(root, chunk_rows=7_000)  # the rerun, with other chunking

    assert summary.scored == ["big.parquet"]
    assert (summary.rows_in, summary.rows_predicted, summary.rows_rejected) == (rows, rows - 5, 5)
    preds, rejected = assert_exactly_once(root, batch.key, rows)
    assert len(preds) == rows - 5 and not preds.duplicated(["batch_key", "row_number"]).any()
    assert sorted(rejected["row_number"]) == [7, 10, 4_321, 15_000, 19_999]
    assert preds["scored_at"].nunique() == 1, "parts of the killed run survived the rerun"
    assert ledger_entry(root, batch.key)["rows_in"] == rows
