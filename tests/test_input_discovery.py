"""Which files under the input become batches, when, and what an idle rerun reads.

Only writers' leftovers are skipped (each with its reason, in the run log and the run's summary);
every other file is scored. A file still being written waits for the next run; a file scored and
unchanged since is not opened again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from helpers import assert_exactly_once
from helpers import dataset_rows
from helpers import read_table
from helpers import write_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_flow(root: Path, **overrides):
    from flows.configs import ScoreConfig
    from flows.score import score_batches

    return score_batches(ScoreConfig(storage=str(root), **overrides))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (".half.parquet", "hidden name .half.parquet"),
        ("day1/.part-0.parquet.tmp", "hidden name .part-0.parquet.tmp"),
        (".staging/a.parquet", "hidden name .staging"),
        ("_temporary/0/part-0.parquet", "_temporary/"),
        ("day1/_temporary/attempt_1/part-0.parquet", "_temporary/"),
        ("_SUCCESS", "completion marker"),
        ("day1/_committed_8121", "commit marker"),
        ("_started_8121", "commit marker"),
        ("part-0.parquet.crc", "checksum"),
        ("_customer_batch.parquet", None),
        ("_archive/late.parquet", None),
        ("day1/batch.parquet", None),
        ("notes.csv", None),  # scored, so reported unreadable: never ignored in silence
    ],
)
def test_only_what_writers_leave_behind_is_a_leftover(name, reason):
    from tasks.scoring.discovery import leftover_reason

    found = leftover_reason(name)
    assert (found is None) if reason is None else (reason in found), found


def test_every_file_is_scored_unless_a_leftover_and_each_skip_is_logged(
    root, prefect_harness, shared_dataset, caplog
):
    batches = {
        "_customer_batch.parquet": dataset_rows(shared_dataset, 6, "cust"),
        "_archive/late.parquet": dataset_rows(shared_dataset, 5, "late", start=10),
        "day1/batch.parquet": dataset_rows(shared_dataset, 4, "d1", start=20),
        "day2/batch.parquet": dataset_rows(shared_dataset, 3, "d2", start=30),
    }
    for name, frame in batches.items():
        write_batch(root, name, frame)
    leftovers = [
        "_SUCCESS",
        "_temporary/0/part-0.parquet",
        ".tmp.parquet",
        "day1/_committed_1",
        "x.parquet.crc",
    ]
    for name in leftovers:
        write_batch(root, name, dataset_rows(shared_dataset, 2, "junk"))

    summary = run_flow(root)

    assert sorted(summary.scored) == sorted(batches)
    assert sorted(summary.skipped) == sorted(leftovers)
    assert all(why.startswith("writer's leftover (") for why in summary.skipped.values())
    for name in leftovers:
        assert f"Skipping {name}: writer's leftover (" in caplog.text
    preds = read_table(root, "predictions")
    # The batch column is the path below incoming/: day1/ and day2/ stay apart.
    assert preds.groupby("batch").size().to_dict() == {name: len(f) for name, f in batches.items()}
    assert not preds["id"].str.startswith("junk").any()


def test_a_file_younger_than_the_minimum_age_waits_for_the_next_run(root, prefect_harness, shared_dataset):
    batch = write_batch(root, "fresh.parquet", dataset_rows(shared_dataset, 8, "fresh"))
    now = time.time()
    os.utime(batch.uri, (now, now))  # it has just landed (or is still being written)

    first = run_flow(root, min_file_age=3600)

    assert first.scored == [] and "younger than --min-file-age 3600 s" in first.skipped["fresh.parquet"]
    assert read_table(root, "predictions").empty

    second = run_flow(root, min_file_age=0)

    assert second.scored == ["fresh.parquet"]
    assert_exactly_once(root, batch.key, 8)


def test_a_file_written_while_the_run_lists_the_folder_is_scored_once_whole(
    root, prefect_harness, shared_dataset, monkeypatch
):
    """A writer appends the second half of a Parquet file right after the run has listed incoming/:
    the run must not score (or key) the half it listed; the next run scores the whole file once."""
    import tasks.scoring.discovery

    whole = write_batch(root, "slow.parquet", dataset_rows(shared_dataset, 40, "slow"))
    data = Path(whole.uri).read_bytes()
    Path(whole.uri).write_bytes(data[: len(data) // 2])  # the writer is half-way
    old = time.time() - 60
    os.utime(whole.uri, (old, old))  # ... and has paused longer than --min-file-age
    real_listing = tasks.scoring.discovery.list_input_files

    def listing_then_the_writer_finishes(*args, **kwargs):
        listed = real_listing(*args, **kwargs)
        with open(whole.uri, "ab") as handle:
            handle.write(data[len(data) // 2 :])
        return listed

    monkeypatch.setattr(tasks.scoring.discovery, "list_input_files", listing_then_the_writer_finishes)
    first = run_flow(root)
    monkeypatch.undo()

    assert first.scored == [] and first.unreadable == {}
    assert "waits for the next run" in first.skipped["slow.parquet"], first.skipped
    assert read_table(root, "predictions").empty and read_table(root, "errors/unreadable").empty
    assert not list((root / "ledger").glob("*.json")), "nothing may be recorded for bytes not scored"

    finished = time.time() - 3600
    os.utime(whole.uri, (finished, finished))  # the next run comes an hour later
    second = run_flow(root)

    assert second.scored == ["slow.parquet"] and second.rows_in == 40
    assert_exactly_once(root, whole.key, 40)  # keyed on the whole file's bytes
    third = run_flow(root)
    assert third.scored == [] and third.unchanged == 1


def test_an_idle_rerun_opens_no_scored_file(root, prefect_harness, shared_dataset, monkeypatch):
    from tasks.store.storage import Storage

    for i in range(3):
        write_batch(root, f"day{i}/b.parquet", dataset_rows(shared_dataset, 5, f"idle{i}", start=5 * i))
    opened: list[str] = []
    real_open = Storage.open_version

    def spy(self, uri, version):
        opened.append(Path(uri).relative_to(root / "incoming").as_posix())
        return real_open(self, uri, version)

    monkeypatch.setattr(Storage, "open_version", spy)

    first = run_flow(root)
    assert len(first.scored) == 3 and sorted(set(opened)) == [
        "day0/b.parquet",
        "day1/b.parquet",
        "day2/b.parquet",
    ]

    opened.clear()
    idle = run_flow(root)
    assert idle.scored == [] and idle.unchanged == 3 and opened == []

    touched = root / "incoming" / "day1" / "b.parquet"
    later = time.time() - 30
    os.utime(touched, (later, later))  # a new modification time, the same bytes
    rehashed = run_flow(root)
    assert rehashed.scored == [] and opened == ["day1/b.parquet"], "only the changed file is read"
    assert "already scored" in rehashed.skipped["day1/b.parquet"]

    opened.clear()
    again = run_flow(root)
    assert again.unchanged == 3 and opened == []
