"""Exactly once when a run pauses past its lease (issue 22, items 1 and 2), on a local folder and on S3.

The chaos test: run A (a real process, tests/chaos_writer.py) scores a batch and freezes itself with
SIGSTOP at one write point; its lease (6 s) runs out; run B (this process) takes the claim over and
scores the whole batch with other chunk sizes; A is resumed and does whatever it does next. Then
every input row must be in predictions or rejected exactly once, review must hold exactly the
flagged predictions, the ledger entry must list parts that exist, and the same after the next run
(its start-of-run reconciliation and a rerun).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from helpers import MODEL_VERSION
from helpers import dataset_rows
from helpers import keyword_comments
from helpers import put_model
from helpers import read_table
from helpers import score
from helpers import write_batch

pytest_plugins = ("s3_support",)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]
ROWS, A_CHUNK, B_CHUNK, LEASE = 60, 20, 25, 6.0
POINTS = ["temp-part", "publish-window", "predictions-0", "predictions-2", "review", "rejected", "ledger"]
# A stale writer paused after its last check can still publish once (one rename or one PUT): the
# tables are right again after the next run's start-of-run reconciliation, not before.
WINDOWS = {"publish-window"}


def chaos_frame(dataset: pd.DataFrame) -> pd.DataFrame:
    """60 rows; in each 20-row chunk of A, a rejected row (blank comment) and flagged rows (words the
    model never saw), so every table gets a part per chunk."""
    frame = dataset_rows(dataset, ROWS, "chaos")
    unknown = keyword_comments(per_class=3)["comentario"].tolist()
    for i, row in enumerate((2, 5, 9, 24, 31, 44, 50, 58)):
        frame.loc[row, "comentario"] = unknown[i]
    frame.loc[[3, 27, 47], "comentario"] = " "
    return frame


@dataclass
class Place:
    """Where the chaos runs: a storage, its input, and how to read a table back."""

    storage: object
    root: str
    endpoint: str
    input_uri: str
    read: object  # table name -> DataFrame

    def ledger_parts_exist(self, key: str) -> None:
        from tasks.scoring.discovery import read_ledger

        record = read_ledger(self.storage, key)
        assert record is not None, "the batch is not committed"
        assert record.status == "scored" and record.rows_in == ROWS
        missing = [rel for rel in record.parts or [] if not self.storage.exists(rel)]
        assert not missing, f"the ledger entry lists parts that are gone: {missing}"


@pytest.fixture(params=["local", "s3"])
def place(request, root, shared_dataset) -> Place:
    frame = chaos_frame(shared_dataset)
    if request.param == "local":
        from tasks.store.storage import Storage

        write_batch(root, "chaos.parquet", frame)
        return Place(
            Storage(str(root)), str(root), "", str(root / "incoming"), lambda table: read_table(root, table)
        )
    from tasks.store.storage import Storage

    server, prefix = request.getfixturevalue("s3_server"), request.getfixturevalue("s3_prefix")
    storage = Storage(prefix / "store", server.endpoint)
    put_model(storage, request.getfixturevalue("model_store"))
    server.put_parquet(f"{prefix.key}/store/incoming/chaos.parquet", frame)
    return Place(
        storage,
        prefix / "store",
        server.endpoint,
        prefix / "store/incoming",
        lambda table: server.read_table(prefix / f"store/{table}"),
    )


def run_b(place: Place, run_id: str, chunk_rows: int = B_CHUNK, rescore: bool = False):
    """Run B: the same batch through process_file, waiting until A's lease has run out."""
    from chaos_writer import input_file

    from flows.configs import ScoreConfig
    from tasks.scoring.batch_job import ScoringRun
    from tasks.scoring.batch_job import process_file

    settings = ScoreConfig(chunk_rows=chunk_rows).scoring_settings()
    run = ScoringRun(run_id=run_id, claim_seconds=30, rescore=rescore)
    said: list[str] = []
    deadline = time.monotonic() + 120
    while True:
        result = process_file(
            place.storage,
            input_file(place.storage, place.input_uri),
            MODEL_VERSION,
            settings,
            run,
            said.append,
        )
        if not (result.status == "skipped" and "claimed by" in (result.reason or "")):
            return result, said
        assert time.monotonic() < deadline, "A's claim never expired"
        time.sleep(0.3)


def start_a(place: Place, point: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"a-{point}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "tests" / "chaos_writer.py"), place.root, place.endpoint]
    command += [place.input_uri, point, str(LEASE), str(A_CHUNK)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


def wait_paused(proc: subprocess.Popen, log: Path, point: str) -> None:
    deadline = time.monotonic() + 300
    while f"PAUSED {point}" not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"A ended before reaching {point}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"A never reached {point}:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    # PAUSED is printed just before SIGSTOP: wait until the kernel reports the process stopped.
    while _state(proc.pid) != "T":
        time.sleep(0.02)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]


def expected_rows(frame: pd.DataFrame) -> tuple[set[int], set[int]]:
    rejected = {i for i, text in enumerate(frame["comentario"]) if not str(text).strip()}
    return set(range(ROWS)) - rejected, rejected


def assert_tables_right(place: Place, key: str, frame: pd.DataFrame, when: str) -> None:
    """Every input row once in predictions or rejected, review = the flagged predictions, committed."""
    preds, rejected, review = (place.read(t) for t in ("predictions", "errors/rejected", "review"))
    preds = preds[preds["batch_key"] == key] if len(preds) else preds
    pred_rows = sorted(preds["row_number"]) if len(preds) else []
    rej_rows = sorted(rejected["row_number"]) if len(rejected) else []
    valid, blank = expected_rows(frame)
    assert len(pred_rows) == len(set(pred_rows)), f"{when}: a row is predicted more than once"
    assert len(rej_rows) == len(set(rej_rows)), f"{when}: a row is rejected more than once"
    assert set(pred_rows) == valid, f"{when}: predictions miss rows {sorted(valid - set(pred_rows))}"
    assert set(rej_rows) == blank, f"{when}: rejected rows {rej_rows}, expected {sorted(blank)}"
    flagged = sorted(preds.loc[preds["needs_review"], "row_number"])
    review_rows = sorted(review["row_number"]) if len(review) else []
    assert flagged, "the batch should have flagged rows"
    assert review_rows == flagged, f"{when}: review has rows {review_rows}, flagged are {flagged}"
    # Every table holds one run's rows only: a stale writer's part overwriting or beside the holder's
    # shows up as a second timestamp even where its rows happen to be the same.
    stamps = {
        "predictions": set(preds["scored_at"]),
        "review": set(review["scored_at"]) if len(review) else set(),
    }
    stamps["errors/rejected"] = set(rejected["rejected_at"]) if len(rejected) else set()
    misclassified, summaries = place.read("errors/misclassified"), place.read("reports/batches")
    stamps["errors/misclassified"] = set(misclassified["scored_at"]) if len(misclassified) else set()
    stamps["reports/batches"] = set(summaries["scored_at"]) if len(summaries) else set()
    assert len(summaries) == 1, f"{when}: {len(summaries)} batch summaries for one batch"
    mixed = {table: len(found) for table, found in stamps.items() if found and found != stamps["predictions"]}
    assert len(stamps["predictions"]) == 1 and not mixed, f"{when}: rows of two runs: {mixed}"
    place.ledger_parts_exist(key)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("point", POINTS)
def test_a_run_paused_past_its_lease_at_any_write_point_loses_and_duplicates_nothing(
    place, point, shared_dataset, tmp_path
):
    from tasks.scoring.discovery import read_ledger
    from tasks.scoring.reconcile import reconcile_outputs
    from tasks.store.tables import parts_of

    frame = chaos_frame(shared_dataset)
    proc, log = start_a(place, point, tmp_path)
    try:
        wait_paused(proc, log, point)
        result, said = run_b(place, "run-B")
        assert result.status == "scored" and result.rows_in == ROWS, result
        assert any("Took over the claim" in line for line in said), said
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.wait(timeout=300)
    print(log.read_text()[-1500:])
    key = result.key

    if point in WINDOWS:  # at most the one part A had checked before its pause, and no ledger change
        place.ledger_parts_exist(key)
        committed = set(read_ledger(place.storage, key).parts)
        late = [rel for rel in parts_of(place.storage, key) if rel not in committed]
        assert len(late) <= 1, f"more than the one request in flight was published: {late}"
    else:
        assert_tables_right(place, key, frame, f"after A resumed at {point}")
    reconcile_outputs(place.storage, print)  # the next run starts
    rerun, _ = run_b(place, "run-C")
    assert rerun.status == "skipped" and "already scored" in rerun.reason, rerun
    assert_tables_right(place, key, frame, f"after the next run (A paused at {point})")


def test_cleanup_after_losing_the_claim_deletes_nothing(root, storage, shared_dataset):
    """Item 1: a run that fails after another run took its claim over deletes none of that run's files."""
    from tasks.scoring.batch_writer import BatchWriter
    from tasks.scoring.claims import ClaimLost

    def lost() -> None:
        raise ClaimLost("another run took the claim over (run B)")

    batch = write_batch(root, "b.parquet", dataset_rows(shared_dataset, 12, "one"))
    score(storage, batch)  # B's committed outputs (written without a fence)
    before = sorted(p.relative_to(root) for p in root.rglob("*.parquet") if "incoming" not in p.parts)
    said: list[str] = []
    writer = BatchWriter(storage, batch.key, fence="000000000001", check=lost, log=said.append)
    writer.written = [str(before[0])]  # even a part A believes is its own
    writer.discard("FileNotFoundError: its temporary file was gone")
    after = sorted(p.relative_to(root) for p in root.rglob("*.parquet") if "incoming" not in p.parts)
    assert after == before
    assert said and "not deleting anything" in said[0] and "run B" in said[0]


def test_a_failure_under_the_claim_deletes_only_the_runs_own_parts(
    root, storage, shared_dataset, monkeypatch
):
    """Item 1: the cleanup of a failed batch removes its own parts, never another fence's."""
    import tasks.scoring.score_file
    from flows.configs import ScoreConfig
    from tasks.scoring.score_file import score_file
    from tasks.store.layout import PREDICTIONS

    batch = write_batch(root, "b.parquet", dataset_rows(shared_dataset, 30, "own"))
    calls = []
    real = tasks.scoring.score_file.check_chunk

    def check_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # a stale writer publishes a part now, then this run fails
            (root / "predictions/scored_date=2030-01-01").mkdir(parents=True, exist_ok=True)
            (root / f"predictions/scored_date=2030-01-01/{batch.key}-000000000001-00000.parquet").write_bytes(
                b"stale"
            )
            raise RuntimeError("the model broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks.scoring.score_file, "check_chunk", check_chunk)
    settings = ScoreConfig(chunk_rows=10).scoring_settings()
    with pytest.raises(RuntimeError, match="the model broke"):
        score_file(storage, batch, MODEL_VERSION, settings, fence="000000000002")
    left = sorted(p.name for p in (root / PREDICTIONS).rglob("*.parquet"))
    assert left == [f"{batch.key}-000000000001-00000.parquet"], "own part left, or another fence's deleted"


def test_reconciliation_removes_only_parts_whose_writer_has_no_lease(root, storage, shared_dataset):
    """Item 2, the rest of the window: an uncommitted part of a writer without a lease is removed
    (and logged); the committed parts and the parts of the claim's live holder stay."""
    from tasks.scoring.claims import acquire
    from tasks.scoring.discovery import read_ledger
    from tasks.scoring.reconcile import reconcile_outputs

    batch = write_batch(root, "b.parquet", dataset_rows(shared_dataset, 12, "rec"))
    with acquire(storage, batch.key, owner="run B", batch=batch.name, lease_seconds=30) as claim:
        committed = score_file_under(storage, batch, claim)
    part_dir = root / "predictions/scored_date=2030-01-01"
    part_dir.mkdir(parents=True)
    stale = part_dir / f"{batch.key}-000000000000-00000.parquet"  # an older fence, published late
    stale.write_bytes((root / committed.parts[0]).read_bytes())
    said: list[str] = []
    with acquire(storage, "cd" * 32, owner="run D", batch="d.parquet", lease_seconds=30) as live:
        in_progress = part_dir / f"{'cd' * 32}-{live.fence}-00000.parquet"
        in_progress.write_bytes(b"D's work in progress")
        done = reconcile_outputs(storage, said.append)
        assert in_progress.exists(), "the part of a run that holds its claim was removed"
    assert not stale.exists() and done.removed == [str(stale.relative_to(root))]
    assert said and "no ledger entry lists it" in said[0]
    assert all((root / rel).exists() for rel in committed.parts)
    assert read_ledger(storage, batch.key) == committed


def test_reconciliation_uncommits_an_entry_whose_parts_are_gone(root, storage, shared_dataset):
    """A stale writer's ledger entry that slipped in after the holder removed its parts is un-committed,
    so the batch is scored again instead of being 'unchanged' with its rows gone."""
    from tasks.scoring.claims import acquire
    from tasks.scoring.discovery import read_ledger
    from tasks.scoring.reconcile import reconcile_outputs

    batch = write_batch(root, "b.parquet", dataset_rows(shared_dataset, 12, "gone"))
    with acquire(storage, batch.key, owner="run A", batch=batch.name, lease_seconds=30) as claim:
        committed = score_file_under(storage, batch, claim)
    (root / committed.parts[0]).unlink()
    said: list[str] = []
    done = reconcile_outputs(storage, said.append)
    assert done.uncommitted == [batch.key] and read_ledger(storage, batch.key) is None
    assert not any(p.name.startswith(batch.key) for p in (root / "predictions").rglob("*.parquet"))
    assert "Un-committed b.parquet" in said[0]


def score_file_under(storage, batch, claim):
    from flows.configs import ScoreConfig
    from tasks.scoring.discovery import read_ledger
    from tasks.scoring.score_file import score_file

    settings = ScoreConfig(chunk_rows=5).scoring_settings()
    score_file(storage, batch, MODEL_VERSION, settings, check=claim.check, fence=claim.fence)
    return read_ledger(storage, batch.key)
