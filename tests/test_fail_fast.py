"""Only errors that can heal are retried: storage and network hiccups. A missing model, a batch that
fails for good, a file with duplicate columns: each fails (or is reported) on the first attempt."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pyarrow as pa
import pytest

from helpers import dataset_rows
from helpers import read_table
from helpers import write_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _client_error(code: str, status: int):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


def _s3fs_translated(code: str, status: int) -> OSError:
    """What s3fs raises: the botocore error translated to an OSError, with the original as its cause."""
    from s3fs.errors import translate_boto_error

    return translate_boto_error(_client_error(code, status))


def test_which_errors_are_retried():
    from botocore.exceptions import EndpointConnectionError

    from tasks.common.retries import is_transient
    from tasks.registry.versions import ModelNotFound

    transient = [
        ConnectionResetError("reset"),
        TimeoutError("timed out"),
        EndpointConnectionError(endpoint_url="http://minio:9000"),
        _s3fs_translated("SlowDown", 503),
        _s3fs_translated("InternalError", 500),
        _s3fs_translated("ServiceUnavailable", 503),
        OSError(errno.ECONNREFUSED, "refused"),
    ]
    permanent = [
        FileNotFoundError("gone"),
        PermissionError("denied"),
        _s3fs_translated("AccessDenied", 403),
        _s3fs_translated("NoSuchKey", 404),
        ModelNotFound("no model"),
        ValueError("bad value"),
        pa.ArrowInvalid("bad schema"),
        OSError("Unexpected end of stream"),
    ]
    assert [is_transient(e) for e in transient] == [True] * len(transient)
    assert [is_transient(e) for e in permanent] == [False] * len(permanent)


def _task_runs(state) -> dict[str, int]:
    """Task name -> run count, of the flow run that ended in ``state``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect.client.schemas.filters import FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return {run.name: run.run_count for run in runs}


def _run(root: Path, **overrides):
    from flows.configs import ScoreConfig
    from flows.score import score_batches

    started = time.perf_counter()
    state = score_batches(ScoreConfig(storage=str(root), **overrides), return_state=True)
    return state, time.perf_counter() - started


def test_a_missing_model_fails_the_run_at_once(root, prefect_harness, shared_dataset):
    write_batch(root, "a.parquet", dataset_rows(shared_dataset, 5, "m"))
    (root / "models" / "LATEST").write_text("20990101T000000Z-missing\n")

    state, seconds = _run(root)

    print(f"missing model: the run failed after {seconds:.2f} s")
    assert state.is_failed()
    assert "'20990101T000000Z-missing' not found" in state.message
    runs = _task_runs(state)
    assert [n for n in runs if n.startswith("resolve-model")] and all(
        count == 1 for name, count in runs.items() if name.startswith("resolve-model")
    ), runs  # one attempt: no 5 s retry delay
    assert not [n for n in runs if n.startswith(("find-batches", "score-"))], "no batch may be touched"
    assert read_table(root, "predictions").empty and not (root / "ledger").exists()


def test_a_batch_that_fails_for_good_is_tried_once(root, prefect_harness, shared_dataset, monkeypatch):
    import tasks.scoring.score_file
    from flows.score import BatchesFailed

    write_batch(root, "a.parquet", dataset_rows(shared_dataset, 5, "p"))

    def broken(*args, **kwargs):
        raise ValueError("a bug, not a hiccup")

    monkeypatch.setattr(tasks.scoring.score_file, "check_chunk", broken)
    state, seconds = _run(root)

    print(f"permanent batch failure: the run failed after {seconds:.2f} s")
    assert state.is_failed()
    with pytest.raises(BatchesFailed, match="a.parquet: failed .ValueError: a bug, not a hiccup"):
        state.result()
    assert _task_runs(state)["score-a.parquet"] == 1
    assert read_table(root, "predictions").empty


def test_duplicate_column_names_are_reported_unreadable_at_once(root, prefect_harness, shared_dataset):
    rows = dataset_rows(shared_dataset, 4, "dup")
    table = pa.Table.from_arrays(
        [pa.array(rows["id"]), pa.array(rows["comentario"]), pa.array(rows["comentario"])],
        names=["id", "comentario", "comentario"],
    )
    write_batch(root, "two_comentarios.parquet", table)

    state, _ = _run(root)

    assert (
        state.is_failed()
        and "two_comentarios.parquet: unreadable (duplicate column name(s): comentario" in (state.message)
    )
    assert _task_runs(state)["score-two_comentarios.parquet"] == 1
    unreadable = read_table(root, "errors/unreadable")
    assert unreadable["batch"].tolist() == ["two_comentarios.parquet"]


def test_model_outside_the_models_folder_is_refused_by_the_cli(root, prefect_harness, shared_dataset, capsys):
    from flows.cli import main

    write_batch(root, "a.parquet", dataset_rows(shared_dataset, 5, "x"))
    outside = root.parent / "outside_models_dir"
    (outside).mkdir()

    code = main(["score", "--storage", str(root), "--model", "../outside_models_dir"])

    assert code == 1
    last = capsys.readouterr().err.rstrip("\n").splitlines()[-1]
    assert last.startswith("comentarios score: '../outside_models_dir' is not a model version name")
    assert read_table(root, "predictions").empty
