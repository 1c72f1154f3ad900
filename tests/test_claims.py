"""Claims on batches (tasks/scoring/claims.py), on a local folder and on S3 (moto): one holder at a time,
released and expired claims taken, a holder that lost its claim told so."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from tasks.scoring.claims import Claim
from tasks.scoring.claims import ClaimHeld
from tasks.scoring.claims import ClaimLost
from tasks.scoring.claims import ClaimRecord
from tasks.scoring.claims import ProcessId
from tasks.scoring.claims import _this_process
from tasks.scoring.claims import acquire
from tasks.scoring.claims import current_claim
from tasks.store.ledger import claim_generation
from tasks.store.storage import Storage

pytest_plugins = ("s3_support",)
KEY = "ab" * 32


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Storage:
    if request.param == "local":
        return Storage(str(tmp_path / "storage"))
    prefix = request.getfixturevalue("s3_prefix")
    return Storage(prefix.uri, prefix.server.endpoint)


def claim(store: Storage, owner: str = "run A", lease: float = 30.0, log=None) -> Claim:
    return acquire(store, KEY, owner=owner, batch="day1/batch.parquet", lease_seconds=lease, log=log)


def plant(store: Storage, record: ClaimRecord) -> None:
    """Another run's claim, written the way that run would have written it."""
    store.create(claim_generation(record.key, record.generation), record.to_json())


def test_one_holder_at_a_time_then_released(store):
    with claim(store, "run A"):
        with pytest.raises(ClaimHeld, match=r"claimed by run A \(scoring day1/batch.parquet\) until"):
            claim(store, "run B")
    released = current_claim(store, KEY)
    assert released.released and released.owner == "run A"
    with claim(store, "run B") as second:
        assert second.record.generation == released.generation + 1
        assert current_claim(store, KEY).owner == "run B"


def test_a_claim_of_another_machine_is_taken_over_only_once_its_lease_ran_out(store):
    elsewhere = ProcessId("other-host/boot/pid:[1]", 4242, "77")
    plant(store, ClaimRecord(KEY, 7, "run X", "day1/batch.parquet", time.time() + 300, process=elsewhere))
    with pytest.raises(ClaimHeld, match="run X"):
        claim(store, "run B")

    store.delete(claim_generation(KEY, 7))
    plant(store, ClaimRecord(KEY, 8, "run X", "day1/batch.parquet", time.time() - 1, process=elsewhere))
    said = []
    with claim(store, "run B", log=said.append) as taken:
        assert taken.record.generation == 9
    assert said == ["Took over the claim on day1/batch.parquet from run X (its lease ran out)"]


def test_a_claim_of_a_dead_process_on_this_machine_is_taken_over_at_once(store):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = replace(_this_process(), pid=child.pid, started=_start_of(child.pid))
        plant(store, ClaimRecord(KEY, 1, "run K", "day1/batch.parquet", time.time() + 300, process=alive))
        with pytest.raises(ClaimHeld, match="run K"):  # its process is alive: it holds the claim
            claim(store, "run B")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    said = []
    with claim(store, "run B", log=said.append):  # kill -9: no need to wait for the lease
        pass
    assert said == ["Took over the claim on day1/batch.parquet from run K (its process is gone)"]


def test_threads_racing_for_one_claim_get_one_holder(store):
    start = threading.Barrier(6)
    outcomes: list[str] = []
    holders: list[Claim] = []

    def contend(i: int) -> None:
        start.wait()
        try:
            holders.append(claim(store, f"run {i}"))
            outcomes.append("held")
        except ClaimHeld:
            outcomes.append("refused")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["held"] + ["refused"] * 5
    assert current_claim(store, KEY).owner == holders[0].record.owner
    holders[0].release()


def test_the_lease_is_renewed_while_held(store):
    with claim(store, lease=0.9) as held:
        first = current_claim(store, KEY)
        deadline = time.monotonic() + 30
        while current_claim(store, KEY).generation == first.generation and time.monotonic() < deadline:
            time.sleep(0.05)
        renewed = current_claim(store, KEY)
        assert renewed.generation > first.generation and renewed.expires_at > first.expires_at
        assert renewed.owner == first.owner and not renewed.released
        held.check()  # still ours
    newest = current_claim(store, KEY).generation
    assert store.glob("claims/*/*.json") == [claim_generation(KEY, newest)], "older generations are tidied"


def test_a_holder_whose_claim_was_taken_over_stops(store):
    held = claim(store, "run A")
    try:
        taker = replace(held.record, generation=held.record.generation + 1, owner="run B")
        plant(store, taker)  # run B decided A was gone and wrote the next generation
        held.renew()
        with pytest.raises(ClaimLost, match="another run took the claim over"):
            held.check()
    finally:
        held.release()
    assert current_claim(store, KEY).owner == "run B" and not current_claim(store, KEY).released


def test_a_holder_that_cannot_renew_stops_at_its_expiry(tmp_path):
    held = claim(Storage(str(tmp_path)), lease=30)
    try:
        held.record = replace(held.record, expires_at=time.time() - 0.1)  # as if every renewal had failed
        with pytest.raises(ClaimLost, match="expired before it could be renewed"):
            held.check()
    finally:
        held.release()


def _start_of(pid: int) -> str:
    from tasks.scoring.claims import _start_ticks

    return _start_ticks(pid)


def test_a_run_that_lost_its_claim_mid_batch_stops_and_deletes_nothing(root, shared_dataset):
    """Run A is paused past its lease; run B takes the batch over and starts writing. When A resumes,
    it finds out before its next write and stops, leaving B's files alone."""
    from flows.configs import ScoreConfig
    from helpers import MODEL_VERSION
    from helpers import dataset_rows
    from helpers import write_batch
    from tasks.scoring.discovery import read_ledger
    from tasks.scoring.score_file import score_file

    storage = Storage(str(root))
    batch = write_batch(root, "a.parquet", dataset_rows(shared_dataset, 30, "lost"))
    held = acquire(storage, batch.key, owner="run A", batch=batch.name, lease_seconds=30)
    b_part = root / "predictions" / "scored_date=2030-01-01" / f"{batch.key}-00000.parquet"

    def meanwhile(line: str) -> None:
        if "part 0" in line:  # A has written its first part: B takes over and writes its own
            plant(storage, replace(held.record, generation=held.record.generation + 1, owner="run B"))
            b_part.parent.mkdir(parents=True, exist_ok=True)
            b_part.write_bytes(b"B's part")
            held.renew()

    settings = ScoreConfig(chunk_rows=10).scoring_settings()
    with pytest.raises(ClaimLost, match="another run took the claim over"):
        score_file(storage, batch, MODEL_VERSION, settings, meanwhile, check=held.check)
    held.release()
    assert b_part.read_bytes() == b"B's part", "the run that lost the claim deleted the new holder's output"
    assert read_ledger(storage, batch.key) is None
    assert current_claim(storage, batch.key).owner == "run B"
