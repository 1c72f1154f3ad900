"""The flows with every byte on S3 (moto on loopback, the real S3 REST API through s3fs).

(a) ``train-lstm`` reads its source from ``s3://`` and publishes the model there; (b) ``score-batches``
scores batches from ``s3://.../incoming/`` and a rerun scores nothing; (c) an unreadable object next to
good ones; (d) the S3 endpoint dies part-way through a run (a TCP proxy between s3fs and moto drops
every connection from the n-th predictions PUT on), the run is started again, and every row is
written exactly once; (e) the same outage, short enough for the task's own Prefect retry to heal it.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.register_assert_rewrite("s3_support")
from helpers import LABELS
from helpers import MODEL_VERSION
from helpers import dataset_rows
from helpers import put_model
from s3_support import FlakyProxy
from s3_support import assert_no_credentials

pytest_plugins = ("s3_support",)
pytestmark = pytest.mark.usefixtures(
    "one_torch_thread"
)  # its fixtures (one moto server per session, a prefix per test)

BAD_TEXT = b"id,comentario\n1,esto es un CSV y no un Parquet\n"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def score_config(prefix, endpoint: str, **overrides):
    """The run's config; batches are uploaded just before, so no minimum file age (S3 keeps upload times)."""
    from flows.configs import ScoreConfig

    return ScoreConfig(storage=prefix / "store", s3_endpoint_url=endpoint, **{"min_file_age": 0, **overrides})


def run_score(prefix, endpoint: str, **overrides):
    from flows.score import score_batches

    return score_batches(score_config(prefix, endpoint, **overrides))


def put_batch(prefix, name: str, frame) -> str:
    """Upload a batch with a client of its own (the producer), under ``store/incoming/``; returns its key."""
    data = prefix.server.put_parquet(f"{prefix.key}/store/incoming/{name}", frame)
    import hashlib

    return hashlib.sha256(data).hexdigest()


def objects(prefix, under: str = "store") -> dict[str, bytes]:
    """Every object under ``<prefix>/<under>`` and its bytes, straight from the S3 API."""
    return {key: prefix.server.get(f"{prefix.key}/{key}") for key in prefix.keys(under)}


def table(prefix, name: str) -> pd.DataFrame:
    return prefix.server.read_table(prefix / f"store/{name}")


def ledger(prefix, key: str) -> dict | None:
    keys = prefix.keys("store/ledger")
    return (
        json.loads(prefix.server.get(f"{prefix.key}/store/ledger/{key}.json"))
        if f"store/ledger/{key}.json" in keys
        else None
    )


def assert_exactly_once(prefix, keys_and_rows: dict[str, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each batch's rows are in predictions or rejected exactly once; no other rows; every part is Parquet."""
    preds, rejected = table(prefix, "predictions"), table(prefix, "errors/rejected")
    assert not preds.duplicated(["batch_key", "row_number"]).any(), "a row is predicted twice"
    if len(rejected):
        assert not rejected.duplicated(["batch_key", "row_number"]).any(), "a row is rejected twice"
    assert set(preds["batch_key"]) | set(rejected.get("batch_key", [])) == set(keys_and_rows)
    for key, rows_in in keys_and_rows.items():
        pred_rows = list(preds.loc[preds["batch_key"] == key, "row_number"])
        rej_rows = list(rejected.loc[rejected["batch_key"] == key, "row_number"]) if len(rejected) else []
        assert sorted(pred_rows + rej_rows) == list(range(rows_in)), (
            f"batch {key[:12]}: rows missing, doubled or invented"
        )
    for rel, data in objects(prefix).items():  # no half-written output anywhere, no temporary names
        if rel.startswith("store/incoming/"):
            continue  # the inputs, bad ones included
        name = rel.rsplit("/", 1)[-1]
        assert not name.startswith((".", "_")) or name == "_COMPLETE", rel
        if rel.endswith(".parquet"):
            pq.read_table(io.BytesIO(data))  # raises on a truncated or partial file
    return preds, rejected


# --------------------------------------------------------------------------------------------------
# (a) Training: source and model on S3
# --------------------------------------------------------------------------------------------------


def test_train_from_s3_source_publishes_the_model_on_s3(
    prefect_harness, s3_server, s3_prefix, shared_dataset_path
):
    from flows.configs import TrainConfig
    from flows.train import train_lstm
    from lstm_model.bundle import MODEL_FILES
    from lstm_model.bundle import NGRAMS_FILE
    from tasks.registry.versions import load_bundle
    from tasks.store.storage import Storage

    source = s3_prefix / "source/comentarios.json"
    s3_server.put(f"{s3_prefix.key}/source/comentarios.json", shared_dataset_path.read_bytes())
    config = TrainConfig(
        source=source,
        storage=s3_prefix / "store",
        s3_endpoint_url=s3_server.endpoint,
        epochs=2,
        embedding_dim=32,
        hidden_size=32,
        num_layers=1,
        head_sizes=[32],
        learning_rate=0.005,
        promote_threshold=0.0,
    )

    summary = train_lstm(config)

    assert summary.promoted and summary.valid_rows + summary.rejected_rows == 2000
    assert summary.model_uri == s3_prefix / f"store/models/{summary.version}"
    assert s3_server.get(f"{s3_prefix.key}/store/models/LATEST").decode().strip() == summary.version
    version_files = {k.rsplit("/", 1)[-1] for k in s3_prefix.keys(f"store/models/{summary.version}")}
    assert version_files == {  # no labels: both bag models (n-grams and stems) by default all the same
        *MODEL_FILES,
        NGRAMS_FILE,
        "rejected_rows.parquet",
        "learning_curve.png",
        "eval.parquet",
        "_COMPLETE",
    }
    (promotion,) = s3_prefix.keys("store/models/promotions")  # the promotions log: one object per entry
    assert promotion.endswith(f"-{summary.version}.json")
    assert s3_prefix.keys() == sorted(
        ["source/comentarios.json", "store/models/LATEST", promotion]
        + [f"store/models/{summary.version}/{n}" for n in version_files]
    ), "the training flow wrote outside its storage root (or left temporary objects)"
    manifest = json.loads(s3_server.get(f"{s3_prefix.key}/store/models/{summary.version}/_COMPLETE"))
    assert set(manifest["files"]) == version_files - {"_COMPLETE"}

    bundle = load_bundle(Storage(s3_prefix / "store", s3_server.endpoint))  # what score-batches will load
    assert bundle.version == summary.version and len(bundle.labels) == 4
    assert s3_server.get(f"{s3_prefix.key}/source/comentarios.json") == shared_dataset_path.read_bytes()
    assert assert_no_credentials(s3_prefix) == len(version_files) + 3


# --------------------------------------------------------------------------------------------------
# (b) Scoring batches from s3://.../incoming/, then a rerun that scores nothing
# --------------------------------------------------------------------------------------------------


def test_score_batches_on_s3_then_rerun_scores_nothing(
    prefect_harness, s3_server, s3_prefix, model_store, shared_dataset
):
    from tasks.scoring.outputs import predictions_schema
    from tasks.store.storage import Storage

    storage = Storage(s3_prefix / "store", s3_server.endpoint)
    put_model(storage, model_store)
    good = dataset_rows(shared_dataset, 30, "s3b1")
    good.loc[4, "comentario"] = "   "
    no_pais = dataset_rows(shared_dataset, 20, "s3b2", start=40).drop(columns=["pais"])
    keys = {
        "a_good.parquet": put_batch(s3_prefix, "a_good.parquet", good),
        "sub/b_no_pais.parquet": put_batch(s3_prefix, "sub/b_no_pais.parquet", no_pais),
    }

    summary = run_score(s3_prefix, s3_server.endpoint, chunk_rows=8)

    assert summary.model_version == MODEL_VERSION
    # The batch column is the path relative to incoming/ (issue 14; it used to be the bare file name).
    assert sorted(summary.scored) == ["a_good.parquet", "sub/b_no_pais.parquet"]
    assert (summary.rows_in, summary.rows_predicted, summary.rows_rejected) == (50, 49, 1)
    assert summary.rows_in == summary.rows_predicted + summary.rows_rejected
    preds, rejected = assert_exactly_once(
        s3_prefix, {keys["a_good.parquet"]: 30, keys["sub/b_no_pais.parquet"]: 20}
    )
    assert len(preds) == 49 and list(rejected["rule"]) == ["comentario_blank"]
    assert list(preds.columns) == [*predictions_schema(LABELS).names, "scored_date"]
    assert set(preds["id"]) == (set(good["id"]) - {"s3b1-4"}) | set(no_pais["id"])
    assert preds["pais"][preds["batch"] == "sub/b_no_pais.parquet"].isna().all()
    assert (preds["categoria_pred"] == preds["categoria"]).mean() >= 0.9  # the model works from S3 too
    reports = table(s3_prefix, "reports/batches").set_index("batch")
    assert (
        reports.loc["a_good.parquet", "rows_in"] == 30
        and reports.loc["sub/b_no_pais.parquet", "rows_rejected"] == 0
    )
    for name, key in keys.items():
        entry = ledger(s3_prefix, key)
        assert entry["status"] == "scored" and entry["uri"] == s3_prefix / f"store/incoming/{name}"
        assert entry["rows_in"] == entry["rows_predicted"] + entry["rows_rejected"]
    assert_no_credentials(s3_prefix)
    before = objects(s3_prefix)

    again = run_score(s3_prefix, s3_server.endpoint, chunk_rows=8)

    assert again.scored == [] and (again.rows_in, again.rows_predicted, again.rows_rejected) == (0, 0, 0)
    assert objects(s3_prefix) == before, "a rerun with nothing new changed the outputs"


# --------------------------------------------------------------------------------------------------
# (c) An unreadable object next to good ones
# --------------------------------------------------------------------------------------------------


def test_unreadable_object_next_to_good_ones(
    prefect_harness, s3_server, s3_prefix, model_store, shared_dataset
):
    from flows.score import BatchesFailed
    from tasks.store.storage import Storage

    put_model(Storage(s3_prefix / "store", s3_server.endpoint), model_store)
    good1 = dataset_rows(shared_dataset, 24, "s3c1")
    good2 = dataset_rows(shared_dataset, 16, "s3c2", start=30)
    keys = {
        "a.parquet": put_batch(s3_prefix, "a.parquet", good1),
        "c.parquet": put_batch(s3_prefix, "c.parquet", good2),
    }
    s3_server.put(f"{s3_prefix.key}/store/incoming/b_bad.parquet", BAD_TEXT)

    with pytest.raises(BatchesFailed) as raised:
        run_score(s3_prefix, s3_server.endpoint, chunk_rows=10)

    message = str(raised.value)
    assert (
        message.startswith("1 batch(es) not scored")
        and "b_bad.parquet: unreadable" in message
        and "Parquet" in message
    )
    preds, _ = assert_exactly_once(s3_prefix, {keys["a.parquet"]: 24, keys["c.parquet"]: 16})
    assert len(preds) == 40
    unreadable = table(s3_prefix, "errors/unreadable")
    assert list(unreadable["batch"]) == ["b_bad.parquet"]
    assert unreadable["path"].iloc[0] == s3_prefix / "store/incoming/b_bad.parquet"
    assert unreadable["size_bytes"].iloc[0] == len(BAD_TEXT)
    # The bad object is left where it was, unchanged; so are the good ones.
    assert s3_server.get(f"{s3_prefix.key}/store/incoming/b_bad.parquet") == BAD_TEXT
    assert s3_prefix.keys("store/incoming") == [
        "store/incoming/a.parquet",
        "store/incoming/b_bad.parquet",
        "store/incoming/c.parquet",
    ]
    before = objects(s3_prefix)

    # Next run: nothing new, the bad file is remembered as unreadable (not retried, not failed again).
    again = run_score(s3_prefix, s3_server.endpoint, chunk_rows=10)
    assert again.scored == [] and again.unreadable == {} and again.rows_in == 0
    assert objects(s3_prefix) == before


# --------------------------------------------------------------------------------------------------
# (d) The endpoint dies part-way through a run; the run is started again: complete, exactly once
# --------------------------------------------------------------------------------------------------


def _four_batches(prefix, dataset) -> dict[str, str]:
    names = {}
    for i in range(4):
        frame = dataset_rows(dataset, 40, f"s3d{i}", start=10 * i)
        if i == 1:
            frame.loc[13, "comentario"] = ""  # one rejected row in the batch that is cut half-way
        names[f"b{i}.parquet"] = put_batch(prefix, f"b{i}.parquet", frame)
    return names


def _proxy(s3_server, prefix, trip_at: int) -> FlakyProxy:
    port = int(s3_server.endpoint.rsplit(":", 1)[1])
    return FlakyProxy(
        port, trip_on=f"PUT /{s3_server.bucket}/{prefix.key}/store/predictions/".encode(), trip_at=trip_at
    )


def test_endpoint_failure_mid_run_then_rerun_is_exactly_once(
    prefect_harness, s3_server, s3_prefix, model_store, shared_dataset, monkeypatch
):
    import flows.score
    from flows.score import BatchesFailed
    from tasks.scoring.batch_job import score_batch
    from tasks.store.storage import Storage

    # One attempt per S3 call inside botocore (s3fs still retries a few times, ~2 s), and no Prefect
    # retry of the batch (its delays are 5 s and 30 s): the outage fails the run, quickly.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setattr(flows.score, "score_batch", score_batch.with_options(retries=0))
    put_model(Storage(s3_prefix / "store", s3_server.endpoint), model_store)
    keys = _four_batches(s3_prefix, shared_dataset)
    # 40 rows in chunks of 10: 4 predictions parts per batch; the 6th PUT is b1's second part.
    proxy = _proxy(s3_server, s3_prefix, trip_at=6)
    try:
        with pytest.raises(BatchesFailed) as raised:
            run_score(s3_prefix, proxy.endpoint, chunk_rows=10)
        assert proxy.tripped.is_set()
        message = str(raised.value)
        assert message.startswith("3 batch(es) not scored")
        for name in ("b1.parquet", "b2.parquet", "b3.parquet"):
            assert f"{name}: failed" in message
        # The outage hit in the middle of b1: b0 complete, b1 half-written and not in the ledger.
        assert prefix_ledger_keys(s3_prefix) == [keys["b0.parquet"]]
        # part names carry the writer's claim fence (<key>-<fence>-<part>.parquet): compare without it
        parts = [re.sub(r"-\d{12}-", "-", k.rsplit("/", 1)[-1]) for k in s3_prefix.keys("store/predictions")]
        assert sorted(parts) == sorted(
            [f"{keys['b0.parquet']}-{p:05d}.parquet" for p in range(4)]
            + [f"{keys['b1.parquet']}-00000.parquet"]
        )
        b0_outputs = {k: v for k, v in objects(s3_prefix).items() if keys["b0.parquet"] in k}

        proxy.heal()
        summary = run_score(s3_prefix, proxy.endpoint, chunk_rows=10)
    finally:
        proxy.close()

    assert summary.scored == ["b1.parquet", "b2.parquet", "b3.parquet"]  # b0 was done: not scored again
    assert (summary.rows_in, summary.rows_predicted, summary.rows_rejected) == (120, 119, 1)
    preds, rejected = assert_exactly_once(s3_prefix, dict.fromkeys(keys.values(), 40))
    assert len(preds) == 159 and len(rejected) == 1 and rejected["batch"].iloc[0] == "b1.parquet"
    assert prefix_ledger_keys(s3_prefix) == sorted(keys.values())
    assert {k: v for k, v in objects(s3_prefix).items() if keys["b0.parquet"] in k} == b0_outputs
    parts = [re.sub(r"-\d{12}-", "-", k.rsplit("/", 1)[-1]) for k in s3_prefix.keys("store/predictions")]
    assert sorted(parts) == sorted(f"{key}-{p:05d}.parquet" for key in keys.values() for p in range(4))
    reports = table(s3_prefix, "reports/batches")
    assert sorted(reports["batch"]) == sorted(keys) and (reports["rows_in"] == 40).all()


def prefix_ledger_keys(prefix) -> list[str]:
    """Committed batch keys: the objects directly under ledger/ (not its by-path/ index or superseded/)."""
    return sorted(
        k.rsplit("/", 1)[-1][: -len(".json")] for k in prefix.keys("store/ledger") if k.count("/") == 2
    )


def test_short_outage_is_healed_by_the_task_retry(
    prefect_harness, s3_server, s3_prefix, model_store, shared_dataset, monkeypatch
):
    """The real flow, retries included: the outage outlasts s3fs's own retries (~2 s) but not the
    batch's first Prefect retry (5 s later), which removes the half-written parts and starts over."""
    from tasks.store.storage import Storage

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    put_model(Storage(s3_prefix / "store", s3_server.endpoint), model_store)
    keys = {
        f"r{i}.parquet": put_batch(
            s3_prefix, f"r{i}.parquet", dataset_rows(shared_dataset, 20, f"s3e{i}", start=5 * i)
        )
        for i in range(2)
    }
    proxy = _proxy(s3_server, s3_prefix, trip_at=2)  # r0's second part

    def heal_later():
        # s3fs gives up on the failing PUT after ~2 s (5 tries); Prefect retries the batch 5 s later.
        if proxy.tripped.wait(60):
            time.sleep(4)
            proxy.heal()

    healer = threading.Thread(target=heal_later, daemon=True)
    healer.start()
    try:
        started = time.perf_counter()
        summary = run_score(s3_prefix, proxy.endpoint, chunk_rows=10)
        elapsed = time.perf_counter() - started
        tripped = proxy.tripped.is_set()
    finally:
        proxy.close()
        healer.join(timeout=5)

    assert tripped and elapsed >= 5  # it did fail, and the retry waited its 5 s
    assert summary.scored == ["r0.parquet", "r1.parquet"] and summary.failed == {}
    assert (summary.rows_in, summary.rows_predicted) == (40, 40)
    preds, _ = assert_exactly_once(s3_prefix, dict.fromkeys(keys.values(), 20))
    assert len(preds) == 40
    assert prefix_ledger_keys(s3_prefix) == sorted(keys.values())


# --------------------------------------------------------------------------------------------------
# (f) An object replaced between the listing and the read waits for the next run (ETag check)
# --------------------------------------------------------------------------------------------------


def test_object_replaced_after_the_listing_is_scored_next_run_whole(
    prefect_harness, s3_server, s3_prefix, model_store, shared_dataset, monkeypatch
):
    import tasks.scoring.discovery
    from tasks.store.storage import Storage

    put_model(Storage(s3_prefix / "store", s3_server.endpoint), model_store)
    first_upload = dataset_rows(shared_dataset, 6, "s3f-partial")
    final = dataset_rows(shared_dataset, 12, "s3f-final")
    put_batch(s3_prefix, "late.parquet", first_upload)
    real_listing = tasks.scoring.discovery.list_input_files
    uploaded = {}

    def listing_then_the_producer_uploads_again(*args, **kwargs):
        listed = real_listing(*args, **kwargs)
        uploaded["key"] = put_batch(s3_prefix, "late.parquet", final)
        return listed

    monkeypatch.setattr(tasks.scoring.discovery, "list_input_files", listing_then_the_producer_uploads_again)
    first = run_score(s3_prefix, s3_server.endpoint)
    monkeypatch.undo()

    assert first.scored == [] and "is not the version listed (ETag" in first.skipped["late.parquet"]
    assert table(s3_prefix, "predictions").empty and prefix_ledger_keys(s3_prefix) == []

    second = run_score(s3_prefix, s3_server.endpoint)

    assert second.scored == ["late.parquet"] and second.rows_in == 12
    preds, _ = assert_exactly_once(s3_prefix, {uploaded["key"]: 12})
    assert sorted(preds["id"]) == sorted(final["id"])
