"""Two ``comentarios score`` processes started together on one storage (the nightly deployment and a
manual run, with different ``--chunk-rows``), on a local folder and on S3 (moto): every row once.

Real processes, real claims: each run lists the same new batches, and whichever claims a batch
first scores it; the other skips it (and says so) or finds it in the ledger. Both processes report
to the session's Prefect test server, so neither pays for starting one of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import MODEL_VERSION
from helpers import dataset_rows

pytest_plugins = ("s3_support",)
REPO = Path(__file__).resolve().parents[1]
BATCHES, ROWS = 6, 3_000


def _frames(dataset: pd.DataFrame) -> dict[str, pd.DataFrame]:
    frames = {}
    for i in range(BATCHES):
        frame = pd.concat([dataset_rows(dataset, 100, f"c{i}", start=i)] * (ROWS // 100), ignore_index=True)
        frame["id"] = [f"c{i}-{j}" for j in range(ROWS)]
        frames[f"day{i % 2}/batch-{i}.parquet"] = frame
    return frames


def _run_two(storage_args: list[str], tmp_path: Path) -> list[tuple[int, str]]:
    """Start two scoring runs at once (chunks of 400 and 1,000 rows); wait for both."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "OMP_NUM_THREADS": "1"}
    procs = []
    for chunk_rows in (400, 1_000):
        log = (tmp_path / f"run-{chunk_rows}.log").open("wb")
        command = [sys.executable, "-m", "flows.cli", "score", *storage_args, "--min-file-age", "0"]
        procs.append(
            (
                subprocess.Popen(
                    [*command, "--chunk-rows", str(chunk_rows)],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    outcomes = []
    for proc, log in procs:
        code = proc.wait(timeout=600)
        log.close()
        outcomes.append((code, Path(log.name).read_text(errors="replace")))
    return outcomes


def _check_every_row_once(outcomes, preds: pd.DataFrame, rejected: pd.DataFrame, frames) -> None:
    for code, output in outcomes:
        assert code == 0, output[-3000:]
    scored = [int(re.search(r"batches:\s+(\d+) scored", out).group(1)) for _, out in outcomes]
    claimed = [len(re.findall(r"Skipping \S+: claimed by run", out)) for _, out in outcomes]
    print(f"batches scored by each run: {scored}; skipped as claimed by the other: {claimed}")
    assert sum(scored) == BATCHES, "a batch was scored by both runs (or by neither)"
    assert rejected.empty
    assert not preds.duplicated(["batch", "row_number"]).any(), "a row was predicted twice"
    assert preds.groupby("batch").size().to_dict() == dict.fromkeys(frames, ROWS)
    for name, frame in frames.items():
        mine = preds[preds["batch"] == name]
        assert sorted(mine["id"]) == sorted(frame["id"]) and mine["scored_at"].nunique() == 1, name
        assert mine["batch_key"].nunique() == 1 and (mine["model_version"] == MODEL_VERSION).all()


@pytest.mark.timeout(900)
def test_two_runs_at_once_on_a_local_folder_score_every_row_once(
    root, prefect_harness, shared_dataset, tmp_path
):
    from helpers import read_table
    from helpers import write_batch
    from tasks.scoring.claims import current_claim

    frames = _frames(shared_dataset)
    keys = [write_batch(root, name, frame).key for name, frame in frames.items()]

    outcomes = _run_two(["--storage", str(root)], tmp_path)

    _check_every_row_once(
        outcomes, read_table(root, "predictions"), read_table(root, "errors/rejected"), frames
    )
    assert sorted(p.stem for p in (root / "ledger").glob("*.json")) == sorted(keys)
    from tasks.store.storage import Storage

    assert all(current_claim(Storage(str(root)), key).released for key in keys), "a claim was left held"


@pytest.mark.timeout(900)
def test_two_runs_at_once_on_s3_score_every_row_once(
    prefect_harness, s3_server, s3_prefix, model_store, shared_dataset, tmp_path
):
    from s3_support import assert_no_credentials
    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version
    from tasks.scoring.claims import current_claim
    from tasks.store.storage import Storage

    storage = Storage(s3_prefix / "store", s3_server.endpoint)
    folder = model_store / "models" / MODEL_VERSION
    write_version(
        storage, MODEL_VERSION, {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "_COMPLETE"}
    )
    set_latest(storage, MODEL_VERSION)
    frames = _frames(shared_dataset)
    keys = []
    for name, frame in frames.items():
        import hashlib

        keys.append(
            hashlib.sha256(s3_server.put_parquet(f"{s3_prefix.key}/store/incoming/{name}", frame)).hexdigest()
        )

    outcomes = _run_two(["--storage", s3_prefix / "store", "--s3-endpoint-url", s3_server.endpoint], tmp_path)

    preds = s3_server.read_table(s3_prefix / "store/predictions")
    rejected = s3_server.read_table(s3_prefix / "store/errors/rejected")
    _check_every_row_once(outcomes, preds, rejected, frames)
    ledger = [
        k.rsplit("/", 1)[-1][: -len(".json")] for k in s3_prefix.keys("store/ledger") if k.count("/") == 2
    ]
    assert sorted(ledger) == sorted(keys)
    assert all(current_claim(storage, key).released for key in keys), "a claim was left held"
    assert_no_credentials(s3_prefix)
