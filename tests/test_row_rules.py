"""The row rules of scoring: every input row ends up predicted or rejected with the rule it broke.

``score_file`` scores one batch end to end without Prefect; ``check_chunk`` checks one chunk.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from helpers import LABELS
from helpers import MODEL_VERSION
from helpers import assert_exactly_once
from helpers import dataset_rows
from helpers import ledger_entry
from helpers import part_files
from helpers import read_table
from helpers import score
from helpers import write_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mixed_batch_every_row_accounted_for(root, storage, shared_dataset):
    good = dataset_rows(shared_dataset, 12, "good")
    long_comment = ("El pedido llegó tarde y nadie responde. " * 2000)[:50_000]
    bad = [  # (row, expected rule)
        ({"id": "bad-null", "comentario": None}, "comentario_missing"),
        ({"id": "bad-empty", "comentario": ""}, "comentario_blank"),
        ({"id": "bad-space", "comentario": "  \t \n "}, "comentario_blank"),
        ({"id": None, "comentario": "El pedido llegó dañado con DHL en Quito."}, "id_missing"),
        ({"id": "dup", "comentario": "El servicio al cliente no responde."}, "id_duplicate"),
        ({"id": "bad-long", "comentario": long_comment}, "comentario_too_long"),
        ({"id": "dup", "comentario": "El precio subió de repente."}, "id_duplicate"),
        (
            {"id": "bad-sent", "comentario": "La app no acepta mi tarjeta.", "sentimiento": "muy malo"},
            "sentimiento_invalid",
        ),
        (
            {"id": "bad-ts", "comentario": "La app no acepta mi tarjeta.", "timestamp": "ayer por la tarde"},
            "timestamp_invalid",
        ),
    ]
    template = good.iloc[0].to_dict()
    rows, expected = [], {}
    good_records = good.to_dict("records")
    # Interleave: bad rows sit between good ones, the two "dup" rows far apart.
    for i, record in enumerate(good_records):
        rows.append(record)
        if i < len(bad):
            values, rule = bad[i]
            expected[len(rows)] = rule
            rows.append({**template, **values})
    frame = pd.DataFrame(rows, dtype=object)
    frame["sentimiento"] = frame["sentimiento"].map(str)  # a text column, so "muy malo" can be in it
    batch = write_batch(root, "mixed.parquet", frame)

    result = score(storage, batch)

    n = len(frame)
    assert result.status == "scored"
    assert (result.rows_in, result.rows_predicted, result.rows_rejected) == (n, n - len(bad), len(bad))
    preds, rejected = assert_exactly_once(root, batch.key, n)
    assert len(preds) == result.rows_predicted and len(rejected) == result.rows_rejected

    got = dict(zip(rejected["row_number"], rejected["rule"], strict=True))
    assert got == expected
    reasons = dict(
        zip(rejected["rule"] + "@" + rejected["row_number"].astype(str), rejected["reason"], strict=True)
    )
    by_rule = {rule: reasons[f"{rule}@{row}"] for row, rule in expected.items()}
    assert "50000 characters" in by_rule["comentario_too_long"] and "5000" in by_rule["comentario_too_long"]
    assert "'dup'" in by_rule["id_duplicate"] and "more than once" in by_rule["id_duplicate"]
    assert "id is missing" == by_rule["id_missing"]
    assert "empty or only whitespace" in by_rule["comentario_blank"]
    assert "'muy malo'" in by_rule["sentimiento_invalid"]
    assert "'ayer por la tarde'" in by_rule["timestamp_invalid"]
    # The report keeps the original values, unchanged.
    original = rejected.set_index("row_number")
    for row in expected:
        source = frame.iloc[row]
        if source["comentario"] is None:
            assert pd.isna(original.loc[row, "comentario"])
        else:
            assert original.loc[row, "comentario"] == source["comentario"]
        assert original.loc[row, "batch"] == "mixed.parquet" and original.loc[row, "batch_key"] == batch.key
    assert (
        len(
            original.loc[
                [r for r, rule in expected.items() if rule == "comentario_too_long"][0], "comentario"
            ]
        )
        == 50_000
    )

    # Good rows: all predicted, with a distribution over the labels; the model knows these texts.
    assert set(preds["id"]) == set(good["id"])
    assert preds["categoria_pred"].isin(LABELS).all()
    probs = preds[[f"prob_{label}" for label in LABELS]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert np.allclose(preds["confianza"], probs.max(axis=1))
    assert (preds["categoria_pred"] == preds["categoria"]).mean() >= 0.9
    assert (preds["model_version"] == MODEL_VERSION).all()

    summary = read_table(root, "reports/batches")
    assert (
        len(summary) == 1 and summary["rows_in"].iloc[0] == n and summary["rows_rejected"].iloc[0] == len(bad)
    )
    ledger = ledger_entry(root, batch.key)
    assert ledger["status"] == "scored" and ledger["rows_in"] == n and ledger["rows_rejected"] == len(bad)


def test_repeated_id_in_different_chunks_is_caught(root, storage, shared_dataset):
    frame = dataset_rows(shared_dataset, 11, "row")
    frame.loc[1, "id"] = "same"
    frame.loc[7, "id"] = "same"  # chunk_rows=3: row 1 is in chunk 0, row 7 in chunk 2
    frame.loc[7, "comentario"] = None  # and it breaks a second rule
    frame.loc[9, "id"] = "same"  # chunk 3
    frame.loc[4, "id"] = None
    batch = write_batch(root, "chunks.parquet", frame)

    result = score(storage, batch, chunk_rows=3)

    assert (result.rows_in, result.rows_predicted, result.rows_rejected) == (11, 7, 4)
    preds, rejected = assert_exactly_once(root, batch.key, 11)
    rules = dict(zip(rejected["row_number"], rejected["rule"], strict=True))
    assert rules == {
        1: "id_duplicate",
        4: "id_missing",
        7: "id_duplicate,comentario_missing",
        9: "id_duplicate",
    }
    reason7 = rejected.loc[rejected["row_number"] == 7, "reason"].iloc[0]
    assert "appears more than once" in reason7 and "comentario is missing" in reason7
    assert len(part_files(root, "predictions")) == 4  # 11 rows in chunks of 3
    assert "same" not in set(preds["id"])


def test_check_chunk_types_and_rejects_untypeable_values():
    from tasks.scoring.chunk_checks import check_chunk
    from tasks.scoring.outputs import PASSTHROUGH
    from tasks.scoring.outputs import REJECTED_SCHEMA

    chunk = pa.table(
        {
            "id": [1, 2, 3, 4, 5],  # numbers are fine: ids are text in the output
            "comentario": [
                "El pedido llegó tarde.",
                "\u00a0\u3000 ",
                "El precio subió.",
                "ok",
                "La web falla.",
            ],
            "timestamp": [
                "2025-01-02T10:00:00",
                "2025-01-02T10:00:00",
                "no-date",
                "2025-01-02T10:00:00+02:00",
                None,
            ],
            "sentimiento": ["-0.5", "0", "1", "abc", None],
            "vendedor": ["ana", "bea", "eva", "rita", None],
        }
    )
    prepared = check_chunk(chunk, 100, {104}, 5_000)

    assert prepared.valid.column_names == [*PASSTHROUGH.names, "row_number"]
    assert prepared.valid["row_number"].to_pylist() == [100]
    assert prepared.valid["id"].to_pylist() == ["1"]
    assert prepared.valid["sentimiento"].to_pylist() == [-0.5]
    assert json.loads(prepared.valid["extra_columns"][0].as_py()) == {"vendedor": "ana"}
    rejected = prepared.rejected.to_pylist()
    assert [r["row_number"] for r in rejected] == [101, 102, 103, 104]
    assert [r["rule"] for r in rejected] == [
        "comentario_blank",
        "timestamp_invalid",
        "sentimiento_invalid",
        "id_duplicate",
    ]
    assert rejected[2]["sentimiento"] == "abc" and rejected[1]["timestamp"] == "no-date"
    assert set(prepared.rejected.column_names) == set(REJECTED_SCHEMA.names) - {
        "batch",
        "batch_key",
        "rejected_at",
    }


def test_check_chunk_takes_parquet_types_analysts_produce():
    """Categorical comments (dictionary-encoded), nanosecond timestamps and binary extra columns are
    scored, not rejected or crashed on."""
    from tasks.scoring.chunk_checks import check_chunk

    chunk = pa.table(
        {
            "id": ["a", "b"],
            "comentario": pa.array(["el paquete llegó roto", "me cobraron de más"]).dictionary_encode(),
            "timestamp": pa.array([1_704_067_200_000_000_001, None], pa.timestamp("ns")),
            "blob": pa.array([b"\xff\x00", None], pa.binary()),
        }
    )
    prepared = check_chunk(chunk, 0, set(), 5_000)
    assert prepared.valid.num_rows == 2 and prepared.rejected.num_rows == 0
    assert prepared.valid["comentario"].to_pylist() == ["el paquete llegó roto", "me cobraron de más"]
    assert str(prepared.valid["timestamp"][0].as_py()) == "2024-01-01 00:00:00+00:00"
    assert json.loads(prepared.valid["extra_columns"][0].as_py()) == {"blob": "/wA="}
    text = pa.table({"id": ["a"], "comentario": ["hola"], "timestamp": ["2024-01-01T00:00:00.123456789Z"]})
    assert check_chunk(text, 0, set(), 5_000).valid["timestamp"][0].as_py().microsecond == 123456
