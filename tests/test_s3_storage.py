"""``Storage`` and everything written through it, on S3: a moto server on loopback, the real S3 REST API.

No Prefect here (fast): the storage primitives, an output part read back by pandas, the model registry,
one batch scored with :func:`tasks.scoring.score_file`, and a search of every object written for the
credentials. The flows on S3 are in ``test_s3_flows.py``.
"""

from __future__ import annotations

import io
import json
from datetime import UTC
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.register_assert_rewrite("s3_support")
import helpers
from s3_support import ACCESS_KEY
from s3_support import SECRET_KEY
from s3_support import assert_no_credentials

pytest_plugins = ("s3_support",)  # its fixtures (one moto server per session, a prefix per test)

LABELS = helpers.LABELS
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def s3_storage(prefix, server, rel: str = "store"):
    from tasks.store.storage import Storage

    return Storage(prefix / rel, server.endpoint)


def tiny_bundle(version: str, **options):
    return helpers.tiny_bundle(version, **options)[0]


# --------------------------------------------------------------------------------------------------
# Storage primitives
# --------------------------------------------------------------------------------------------------


def test_storage_round_trip_on_s3(s3_server, s3_prefix):
    storage = s3_storage(s3_prefix, s3_server)
    assert not storage.is_local
    assert storage.uri() == s3_prefix / "store"
    assert storage.uri("a/b.txt") == s3_prefix / "store/a/b.txt"
    assert storage.path("a") == f"{s3_server.bucket}/{s3_prefix.key}/store/a"

    storage.write_bytes("blobs/one.bin", b"\x00\x01binary\xff")
    storage.write_text("blobs/two.txt", "dos ñandú\n")
    with storage.open_write("nested/deeper/three.bin") as handle:
        handle.write(b"tres-")
        handle.write(b"partes")
    big = bytes(range(256)) * 40_000  # 10 MB: still one object, read back whole
    storage.write_bytes("blobs/big.bin", big)

    # What the S3 API itself holds (not s3fs's view of it).
    assert s3_prefix.keys() == [
        "store/blobs/big.bin",
        "store/blobs/one.bin",
        "store/blobs/two.txt",
        "store/nested/deeper/three.bin",
    ]
    assert s3_server.get(f"{s3_prefix.key}/store/nested/deeper/three.bin") == b"tres-partes"

    assert storage.read_bytes("blobs/one.bin") == b"\x00\x01binary\xff"
    assert storage.read_text("blobs/two.txt") == "dos ñandú\n"
    assert storage.read_bytes("blobs/big.bin") == big
    assert storage.exists("blobs/one.bin") and storage.exists("nested/deeper/three.bin")
    assert not storage.exists("blobs/missing.bin") and not storage.exists("elsewhere/x")
    assert storage.glob("blobs/*") == ["blobs/big.bin", "blobs/one.bin", "blobs/two.txt"]
    assert storage.glob("blobs/*.txt") == ["blobs/two.txt"]
    assert storage.glob("*/deeper/*.bin") == ["nested/deeper/three.bin"]
    assert storage.glob("nothing/*.bin") == []

    # Overwrite is a replace; any s3:// URI opens with the storage's endpoint.
    storage.write_text("blobs/two.txt", "otra vez")
    assert storage.read_text("blobs/two.txt") == "otra vez"
    with storage.open_uri(s3_prefix / "store/nested/deeper/three.bin") as handle:
        assert handle.read() == b"tres-partes"

    storage.delete("blobs/one.bin")
    storage.delete("blobs/never-written.bin")  # deleting what is not there is fine
    storage.delete("nested", recursive=True)
    assert s3_prefix.keys() == ["store/blobs/big.bin", "store/blobs/two.txt"]
    assert not storage.exists("blobs/one.bin")
    assert storage.glob("blobs/*") == ["blobs/big.bin", "blobs/two.txt"]


def test_open_write_that_fails_leaves_no_object(s3_server, s3_prefix):
    """All-or-nothing: a block that raises must not leave what it wrote so far under the target name.

    On S3 there is no temporary name + rename; the object must simply never be PUT (and a multipart
    upload must be aborted), otherwise a reader finds half a Parquet file in the output table.
    """
    storage = s3_storage(s3_prefix, s3_server)
    storage.write_text("keep.txt", "old")

    with (
        pytest.raises(RuntimeError, match="boom"),
        storage.open_write("predictions/part-00000.parquet") as handle,
    ):
        handle.write(b"PAR1 half of a parquet file")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"), storage.open_write("keep.txt") as handle:
        handle.write(b"new but unfinished")
        raise RuntimeError("boom")

    assert s3_prefix.keys() == ["store/keep.txt"]
    assert storage.read_text("keep.txt") == "old"


def test_listings_see_objects_written_by_other_programs(s3_server, s3_prefix):
    """Several processes share a prefix (Dask workers, the next run, the producer of batches): what one
    writes, the others' ``glob``/``exists`` must see, even after they listed the folder before."""
    storage = s3_storage(s3_prefix, s3_server)
    storage.write_text("ledger/aaa.json", "{}")
    assert storage.glob("ledger/*.json") == ["ledger/aaa.json"]
    assert not storage.exists("ledger/bbb.json")

    other = s3_server.fs()  # another process's client
    other.pipe(storage.uri("ledger/bbb.json"), b"{}")
    s3_server.put(f"{s3_prefix.key}/store/ledger/ccc.json", b"{}")  # and plain boto3

    assert storage.glob("ledger/*.json") == ["ledger/aaa.json", "ledger/bbb.json", "ledger/ccc.json"]
    assert storage.exists("ledger/bbb.json") and storage.exists("ledger/ccc.json")

    other.rm(storage.uri("ledger/aaa.json"))
    assert storage.glob("ledger/*.json") == ["ledger/bbb.json", "ledger/ccc.json"]
    assert not storage.exists("ledger/aaa.json")


# --------------------------------------------------------------------------------------------------
# Output tables: a part written by the project is a Parquet dataset pandas reads straight from S3
# --------------------------------------------------------------------------------------------------


def test_output_part_is_read_by_pandas_from_s3(s3_server, s3_prefix):
    from tasks.scoring.outputs import REJECTED_SCHEMA
    from tasks.scoring.outputs import predictions_schema
    from tasks.store.layout import PREDICTIONS
    from tasks.store.layout import REJECTED
    from tasks.store.tables import write_part

    storage = s3_storage(s3_prefix, s3_server)
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    schema = predictions_schema(LABELS)
    rows = [
        {
            "id": f"r{i}",
            "comentario": f"comentario {i}",
            "categoria_pred": LABELS[i % 4],
            "confianza": 0.5,
            **{f"prob_{label}": 0.25 for label in LABELS},
            "model_version": "v1",
            "batch": "b.parquet",
            "batch_key": "k" * 64,
            "row_number": i,
            "scored_at": when,
        }
        for i in range(5)
    ]
    table = pa.Table.from_pylist(rows, schema=schema)
    rel0 = write_part(storage, PREDICTIONS, when, "k" * 64, 0, table.slice(0, 3))
    rel1 = write_part(storage, PREDICTIONS, when, "k" * 64, 1, table.slice(3))
    rejected = pa.Table.from_pylist(
        [
            {
                "id": "x",
                "comentario": "",
                "batch": "b.parquet",
                "batch_key": "k" * 64,
                "row_number": 5,
                "rule": "comentario_blank",
                "reason": "vacío",
                "rejected_at": when,
            }
        ],
        schema=REJECTED_SCHEMA,
    )
    write_part(storage, REJECTED, when, "k" * 64, 0, rejected)

    assert rel0 == f"predictions/scored_date=2025-03-04/{'k' * 64}-00000.parquet"
    assert s3_prefix.keys("store/predictions") == [f"store/{rel0}", f"store/{rel1}"]

    # The whole table, hive partition included, as an analyst reads it: a URI and storage_options.
    options = {"endpoint_url": s3_server.endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY}
    frame = pd.read_parquet(storage.uri(PREDICTIONS), storage_options=options)
    assert list(frame.columns) == [*schema.names, "scored_date"]
    assert sorted(frame["row_number"]) == [0, 1, 2, 3, 4]
    assert set(frame["scored_date"].astype(str)) == {"2025-03-04"}
    assert frame.set_index("row_number").loc[4, "id"] == "r4"
    # Only the endpoint: the keys come from the environment, as in the project.
    one = pd.read_parquet(storage.uri(rel1), storage_options={"endpoint_url": s3_server.endpoint})
    assert list(one["id"]) == ["r3", "r4"]
    assert pq.read_table(io.BytesIO(s3_server.get(f"{s3_prefix.key}/store/{rel0}"))).schema.equals(schema)
    errors = pd.read_parquet(storage.uri(REJECTED), storage_options=s3_server.read_options())
    assert list(errors["rule"]) == ["comentario_blank"] and list(errors["reason"]) == ["vacío"]


# --------------------------------------------------------------------------------------------------
# Model registry on S3
# --------------------------------------------------------------------------------------------------


def test_registry_round_trip_and_incomplete_versions_on_s3(s3_server, s3_prefix, shared_dataset):
    import torch

    from lstm_model.bundle import MODEL_FILES
    from tasks.registry.versions import ModelNotFound
    from tasks.registry.versions import is_complete
    from tasks.registry.versions import load_bundle
    from tasks.registry.versions import resolve_version
    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version
    from tasks.store.layout import LATEST

    storage = s3_storage(s3_prefix, s3_server)
    with pytest.raises(ModelNotFound, match="no promoted model"):
        load_bundle(storage)

    bundle = tiny_bundle("20250101T000000Z-s3", second_features="both")  # every file a bundle can hold
    files = bundle.to_files()
    write_version(storage, bundle.version, {**files, "learning_curve.png": b"\x89PNG fake"})
    set_latest(storage, bundle.version)

    assert s3_prefix.keys("store/models") == sorted(
        [
            f"store/models/{bundle.version}/{name}"
            for name in (*MODEL_FILES, "learning_curve.png", "_COMPLETE")
        ]
        + ["store/models/LATEST"]
    )
    assert s3_server.get(f"{s3_prefix.key}/store/{LATEST}").decode().strip() == bundle.version
    manifest = json.loads(s3_server.get(f"{s3_prefix.key}/store/models/{bundle.version}/_COMPLETE"))
    assert set(manifest["files"]) == {*MODEL_FILES, "learning_curve.png"}

    loaded = load_bundle(storage)  # through LATEST
    assert loaded.version == bundle.version and loaded.labels == LABELS and loaded.vocab == bundle.vocab
    assert loaded.to_files() == files
    assert set(loaded.state_dict) == set(bundle.state_dict)
    assert all(torch.equal(loaded.state_dict[k], bundle.state_dict[k]) for k in bundle.state_dict)
    assert load_bundle(storage, bundle.version).version == bundle.version

    # A version whose files are all there but whose manifest was never written (a publisher that
    # died at the last step) is not a model: it can't be loaded or promoted, and LATEST stays put.
    half = tiny_bundle("20250202T000000Z-half")
    for name, data in half.to_files().items():
        storage.write_bytes(f"models/{half.version}/{name}", data)
    assert not is_complete(storage, half.version)
    with pytest.raises(ModelNotFound, match="not found"):
        load_bundle(storage, half.version)
    with pytest.raises(ModelNotFound, match="not a complete model version"):
        set_latest(storage, half.version)
    assert resolve_version(storage) == bundle.version
    # ... and once its manifest is there, it is.
    write_version(storage, half.version, half.to_files())
    set_latest(storage, half.version)
    assert load_bundle(storage).version == half.version


# --------------------------------------------------------------------------------------------------
# Credentials: never in the Storage's repr, the ledger, the output tables, or any other object
# --------------------------------------------------------------------------------------------------


def test_credentials_are_never_written(s3_server, s3_prefix, shared_dataset):
    import fsspec

    from flows.configs import ScoreConfig
    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version
    from tasks.scoring.discovery import BatchFile
    from tasks.scoring.discovery import content_key
    from tasks.scoring.discovery import read_ledger
    from tasks.scoring.score_file import score_file
    from tasks.store.layout import TABLES
    from tasks.store.storage import Storage

    storage = s3_storage(s3_prefix, s3_server)
    for text in (repr(storage), str(storage), repr(storage.options)):
        assert SECRET_KEY not in text and ACCESS_KEY not in text
    assert storage.options == {**storage.options, "endpoint_url": s3_server.endpoint}
    assert not {"key", "secret", "token", "aws_access_key_id", "aws_secret_access_key"} & set(storage.options)

    bundle = tiny_bundle("20250303T000000Z-creds")
    write_version(storage, bundle.version, bundle.to_files())
    set_latest(storage, bundle.version)

    rows = shared_dataset.head(12).astype(object).reset_index(drop=True)
    rows.loc[3, "comentario"] = "   "  # one rejected row, so errors/rejected is written too
    rows.loc[4, "comentario"] = "zzz qqq"  # no known word: flagged, so review/ is written too
    rows.loc[5, "categoria"] = "logistica" if rows.loc[5, "categoria"] != "logistica" else "precios"
    s3_server.put_parquet(f"{s3_prefix.key}/store/incoming/b1.parquet", rows)
    s3_server.put(f"{s3_prefix.key}/store/incoming/bad.parquet", b"not parquet")
    fs, _ = fsspec.core.url_to_fs(storage.uri(), endpoint_url=s3_server.endpoint)
    results = {}
    for name in ("b1.parquet", "bad.parquet"):
        path = storage.path(f"incoming/{name}")
        batch = BatchFile(storage.uri(f"incoming/{name}"), name, content_key(fs, path), fs.size(path))
        assert SECRET_KEY not in repr(batch)
        results[name] = score_file(
            storage, batch, bundle.version, ScoreConfig(chunk_rows=5).scoring_settings()
        )

    assert results["b1.parquet"].status == "scored" and results["b1.parquet"].rows_in == 12
    assert results["bad.parquet"].status == "unreadable"
    ledger = read_ledger(storage, results["b1.parquet"].key)
    assert ledger.status == "scored" and ledger.uri == storage.uri("incoming/b1.parquet")
    written = s3_prefix.keys("store")
    for table in TABLES:
        assert any(k.startswith(f"store/{table}/") for k in written), table
    checked = assert_no_credentials(s3_prefix)
    assert checked == len(written) >= 12
    for table in TABLES:  # and decoded, in case an encoding hid it from the byte search
        frame = pd.read_parquet(storage.uri(table), storage_options=s3_server.read_options())
        text = frame.astype(str).to_csv()
        assert SECRET_KEY not in text and ACCESS_KEY not in text
    assert Storage(storage.root, storage.endpoint_url) == storage
