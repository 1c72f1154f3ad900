"""The output tables as analysts read them: pandas and DuckDB, every input column kept, misclassified rows."""

from __future__ import annotations

import json
import math

import duckdb
import pandas as pd
import pytest

from helpers import LABELS
from helpers import MODEL_VERSION
from helpers import dataset_rows
from helpers import predicted_labels
from helpers import read_table
from helpers import score
from helpers import write_batch
from tasks.common.schema import COLUMNS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

UNKNOWN_WORD = "zzzxqw"


def test_output_tables_read_with_pandas_and_duckdb(root, storage, shared_dataset):
    from tasks.scoring.outputs import predictions_schema

    full = dataset_rows(shared_dataset, 12, "full")
    full.loc[5, "comentario"] = ""
    no_pais = dataset_rows(shared_dataset, 9, "nopais", start=50).drop(columns=["pais"])
    no_pais.loc[2, "id"] = None
    a = write_batch(root, "full.parquet", full)
    b = write_batch(root, "no_pais.parquet", no_pais)
    score(storage, a)
    score(storage, b)

    preds = pd.read_parquet(root / "predictions")
    assert list(preds.columns) == [*predictions_schema(LABELS).names, "scored_date"]
    assert len(preds) == 11 + 8
    from_b = preds[preds["batch"] == "no_pais.parquet"]
    from_a = preds[preds["batch"] == "full.parquet"].set_index("id")
    assert len(from_b) == 8 and from_b["pais"].isna().all()
    assert all(
        from_a.loc[i, "pais"] == p for i, p in zip(full["id"], full["pais"], strict=True) if i in from_a.index
    )

    pandas_totals = preds.groupby("categoria_pred").size().to_dict()
    duck = duckdb.sql(
        f"select categoria_pred, count(*) from read_parquet('{root}/predictions/**/*.parquet', hive_partitioning=true) group by 1"
    ).fetchall()
    assert dict(duck) == pandas_totals
    day = duckdb.sql(
        f"select distinct scored_date from read_parquet('{root}/predictions/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert {str(d[0]) for d in day} == {str(v) for v in preds["scored_date"].unique()}

    rejected = pd.read_parquet(root / "errors" / "rejected")
    assert {"rule", "reason", "row_number", "batch", "batch_key", "rejected_at", "scored_date"} <= set(
        rejected.columns
    )
    assert sorted(rejected["rule"]) == ["comentario_blank", "id_missing"]
    assert rejected["reason"].str.len().gt(0).all()
    summaries = pd.read_parquet(root / "reports" / "batches")
    assert sorted(summaries["batch"]) == ["full.parquet", "no_pais.parquet"]


def test_predictions_keep_every_input_column(root, storage, shared_dataset):
    frame = dataset_rows(shared_dataset, 6, "cols")
    frame["vendedor"] = pd.Series(["ana", "bea", None, "dora", "eva", "fer"], dtype=object)
    frame["puntaje"] = [1, 2, 3, 4, 5, 6]
    frame["nota"] = pd.Series(['ñandú "citado"', "línea1\nlínea2", "", "x", "y", "z"], dtype=object)
    batch = write_batch(root, "cols.parquet", frame)
    plain = write_batch(root, "plain.parquet", dataset_rows(shared_dataset, 3, "plain"))

    score(storage, batch)
    score(storage, plain)

    preds = read_table(root, "predictions")
    mine = preds[preds["batch_key"] == batch.key].set_index("id")
    assert len(mine) == 6
    for _, row in frame.iterrows():
        out = mine.loc[row["id"]]
        for column in set(COLUMNS) - {"id", "timestamp", "sentimiento"}:
            assert out[column] == row[column], column
        assert out["sentimiento"] == pytest.approx(float(row["sentimiento"]))
        assert out["timestamp"] == pd.Timestamp(row["timestamp"], tz="UTC")
        extra = json.loads(out["extra_columns"])
        assert extra == {"vendedor": row["vendedor"], "puntaje": row["puntaje"], "nota": row["nota"]}
    assert preds.loc[preds["batch_key"] == plain.key, "extra_columns"].isna().all()


def test_extra_column_text_with_unicode_line_separators(root, storage, shared_dataset):
    """Free text pasted from the web can hold U+2028 / U+0085; the row must still be scored and its value kept."""
    frame = dataset_rows(shared_dataset, 4, "sep")
    frame["nota"] = ["antes\u2028después", "uno\x85dos", "normal", "tab\tfin"]
    batch = write_batch(root, "separators.parquet", frame)

    result = score(storage, batch)

    assert result.rows_predicted == 4
    preds = read_table(root, "predictions").set_index("id")
    assert [json.loads(preds.loc[i, "extra_columns"])["nota"] for i in frame["id"]] == list(frame["nota"])


def test_labelled_batch_reports_misclassified_rows(root, storage, shared_dataset):
    import pyarrow as pa

    from flows.configs import ScoreConfig
    from lstm_model.tokenizer import tokenize_arrow
    from tasks.scoring.score_file import load_scoring_model

    frame = dataset_rows(shared_dataset, 24, "lab")
    frame.loc[3, "comentario"] = f"{frame.loc[3, 'comentario']} {UNKNOWN_WORD}"
    frame.loc[20, "categoria"] = None  # unlabelled rows are never "misclassified"
    model = load_scoring_model(storage, MODEL_VERSION, ScoreConfig().scoring_settings())
    predicted = predicted_labels(model.classifier, frame["comentario"].tolist())
    flip = [0, 3, 9, 14, 22]
    for i in flip:
        frame.loc[i, "categoria"] = next(label for label in LABELS if label != predicted[i])
    expected_wrong = {
        i
        for i in range(len(frame))
        if frame.loc[i, "categoria"] is not None and frame.loc[i, "categoria"] != predicted[i]
    }
    assert set(flip) <= expected_wrong
    batch = write_batch(root, "labelled.parquet", frame)

    result = score(storage, batch)

    wrong = read_table(root, "errors/misclassified")
    assert set(wrong["row_number"]) == expected_wrong and len(wrong) == len(expected_wrong)
    for column in (
        "id",
        "comentario",
        "tokens",
        "categoria",
        "categoria_pred",
        "confianza",
        "batch",
        "batch_key",
        "model_version",
    ):
        assert column in wrong.columns
    wrong = wrong.set_index("row_number")
    vocab = model.bundle.vocab
    for i in expected_wrong:
        row = wrong.loc[i]
        assert row["comentario"] == frame.loc[i, "comentario"] and row["id"] == frame.loc[i, "id"]
        assert row["categoria"] == frame.loc[i, "categoria"] and row["categoria_pred"] == predicted[i]
        assert 0 < row["confianza"] <= 1
        tokens = list(row["tokens"])
        assert all(isinstance(t, str) for t in tokens)
        seen = vocab.keys(tokenize_arrow(pa.array([frame.loc[i, "comentario"]]))[0].as_py())
        assert tokens == [key if key in vocab else "[UNK]" for key in seen][:64]
    assert list(wrong.loc[3, "tokens"])[-1] == "[UNK]", "the unknown word must show as [UNK]"
    assert result.summary.misclassified_rows == len(expected_wrong)
    assert result.summary.labelled_rows == len(frame) - 1
    assert math.isclose(result.summary.accuracy, 1 - len(expected_wrong) / (len(frame) - 1))
    preds = read_table(root, "predictions").set_index("row_number")
    assert all(preds.loc[i, "categoria_pred"] == predicted[i] for i in range(len(frame)))
