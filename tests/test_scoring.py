"""Unit-level tests of batch scoring: :func:`tasks.scoring.score_file` and :func:`tasks.scoring_rows.prepare_chunk`.

No Prefect here: ``score_file`` does one batch end to end, so these tests are fast and can simulate a
crash at any write. One small model is trained per test session (two epochs on the shared dataset,
a few seconds) and copied into each test's storage root, so every test owns its storage.

The helpers at the top (``ensure_model_store``, ``write_batch``, ``read_table``...) are also used by
``test_score_flow.py``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import duckdb
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _torch_threads import one_torch_thread  # noqa: F401  (autouse fixture: one torch thread)

LABELS = ("ecommerce", "logistica", "precios", "servicio_cliente")
MODEL_VERSION = "20250101T000000Z-testlstm"
UNKNOWN_WORD = "zzzxqw"


# --------------------------------------------------------------------------------------------------
# Shared helpers (imported by test_score_flow.py)
# --------------------------------------------------------------------------------------------------


def ensure_model_store(base: Path, dataset: pd.DataFrame) -> Path:
    """A storage root holding ``models/<MODEL_VERSION>`` and ``models/LATEST``; trained once per session.

    The store lives in the session's pytest temp dir, so both test files share one model; a folder
    with ``LATEST`` in it is complete (``set_latest`` refuses an incomplete version).
    """
    import torch

    from lstm_model.batching import encode_tokens
    from lstm_model.bundle import ModelBundle
    from lstm_model.model import LSTMClassifier, ModelConfig
    from lstm_model.tokenizer import tokenize_arrow
    from lstm_model.training import TrainingConfig, train_classifier
    from lstm_model.vocab import Vocabulary
    from tasks.registry import LATEST, set_latest, write_version
    from tasks.storage import Storage

    root = base / "comentarios-scoring-model"
    if (root / LATEST).exists():
        return root
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 busy cores: OpenMP spinning makes 2 threads ~100x slower than 1
    try:
        tokens = tokenize_arrow(pa.array(dataset["comentario"].tolist(), pa.string()))
        vocab = Vocabulary.build(tokens.to_pylist(), prefix_chars=5)
        index = {label: i for i, label in enumerate(LABELS)}
        labels = dataset["categoria"].map(index).to_numpy()
        encoded = encode_tokens(tokens, vocab, 64)
        rng = np.random.default_rng(0)
        val_rows = rng.choice(len(dataset), 200, replace=False)
        model = LSTMClassifier(ModelConfig(len(vocab), len(LABELS), embedding_dim=64, hidden_size=64, num_layers=1, head_sizes=(64,)))
        train_classifier(
            model, encoded, labels, encoded.take(val_rows), labels[val_rows],
            TrainingConfig(epochs=2, batch_size=32, device="cpu", seed=0),
        )
    finally:
        torch.set_num_threads(threads)
    bundle = ModelBundle.from_model(
        model, version=MODEL_VERSION, vocab=vocab, labels=LABELS, max_len=64, data_fingerprint="test",
        training={"val_unknown_share": 0.0},
    )
    staging = base / "comentarios-scoring-model-staging"
    shutil.rmtree(staging, ignore_errors=True)
    storage = Storage(str(staging))
    write_version(storage, MODEL_VERSION, bundle.to_files())
    set_latest(storage, MODEL_VERSION)
    staging.rename(root)
    return root


def new_storage_root(model_store: Path, root: Path) -> Path:
    """A fresh storage root with a copy of the session's model."""
    shutil.copytree(model_store / "models", root / "models")
    return root


def write_batch(root: Path, name: str, data: pd.DataFrame | pa.Table | bytes, folder: str = "incoming"):
    """Write one batch file under ``<root>/<folder>/`` and return its :class:`BatchFile`."""
    from tasks.batches import BatchFile, content_key

    path = root / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        pq.write_table(table, path)
    return BatchFile(str(path), name, content_key(fsspec.filesystem("file"), str(path)), path.stat().st_size)


def read_table(root: Path, table: str) -> pd.DataFrame:
    """One output table as pandas (hive partitions included); empty frame when nothing was written."""
    folder = root / table
    if not folder.exists() or not any(folder.rglob("*.parquet")):
        return pd.DataFrame()
    return pd.read_parquet(folder)


def part_files(root: Path, table: str) -> list[Path]:
    folder = root / table
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith((".", "_"))) if folder.exists() else []


def dataset_rows(dataset: pd.DataFrame, n: int, prefix: str, start: int = 0) -> pd.DataFrame:
    """``n`` rows of the shared dataset, balanced over the classes, with fresh unique ids."""
    per_class = [dataset[dataset["categoria"] == label].iloc[start:] for label in LABELS]
    rows = pd.concat([frame.iloc[i : i + 1] for i in range(n) for frame in per_class]).iloc[:n]
    rows = rows.reset_index(drop=True).astype({c: object for c in rows.columns})
    rows["id"] = [f"{prefix}-{i}" for i in range(n)]
    return rows


def assert_exactly_once(root: Path, batch_key: str, rows_in: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every input row of the batch is in predictions or rejected, once; returns both tables for the batch."""
    preds = read_table(root, "predictions")
    rejected = read_table(root, "errors/rejected")
    preds = preds[preds["batch_key"] == batch_key] if len(preds) else preds
    rejected = rejected[rejected["batch_key"] == batch_key] if len(rejected) else rejected
    pred_rows = list(preds["row_number"]) if len(preds) else []
    rej_rows = list(rejected["row_number"]) if len(rejected) else []
    assert len(pred_rows) == len(set(pred_rows)), "a row is predicted more than once"
    assert len(rej_rows) == len(set(rej_rows)), "a row is rejected more than once"
    assert not set(pred_rows) & set(rej_rows), "a row is both predicted and rejected"
    assert sorted(pred_rows + rej_rows) == list(range(rows_in)), "rows missing (or invented) across predictions + rejected"
    return preds, rejected


def ledger_entry(root: Path, key: str) -> dict | None:
    path = root / "ledger" / f"{key}.json"
    return json.loads(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------




@pytest.fixture(scope="session")
def model_store(tmp_path_factory, shared_dataset) -> Path:
    return ensure_model_store(tmp_path_factory.getbasetemp(), shared_dataset)


@pytest.fixture
def root(model_store, tmp_path) -> Path:
    return new_storage_root(model_store, tmp_path / "storage")


@pytest.fixture
def storage(root):
    from tasks.storage import Storage

    return Storage(str(root))


def settings(**kwargs):
    from tasks.scoring import ScoringSettings

    return ScoringSettings(**kwargs)


def score(storage, batch, **kwargs):
    from tasks.scoring import score_file

    return score_file(storage, batch, MODEL_VERSION, settings(**kwargs))


# --------------------------------------------------------------------------------------------------
# 1. Bad rows: every row accounted for, the right rule for each, good rows predicted
# --------------------------------------------------------------------------------------------------


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
        ({"id": "bad-sent", "comentario": "La app no acepta mi tarjeta.", "sentimiento": "muy malo"}, "sentimiento_invalid"),
        ({"id": "bad-ts", "comentario": "La app no acepta mi tarjeta.", "timestamp": "ayer por la tarde"}, "timestamp_invalid"),
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

    got = dict(zip(rejected["row_number"], rejected["rule"]))
    assert got == expected
    reasons = dict(zip(rejected["rule"] + "@" + rejected["row_number"].astype(str), rejected["reason"]))
    by_rule = {rule: reasons[f"{rule}@{row}"] for row, rule in expected.items()}
    assert "50000 characters" in by_rule["comentario_too_long"] and "5000" in by_rule["comentario_too_long"]
    assert "'dup'" in by_rule["id_duplicate"] and "more than once" in by_rule["id_duplicate"]
    assert "id is missing" == by_rule["id_missing"]
    assert "empty or only whitespace" in by_rule["comentario_blank"]
    assert "'muy malo'" in by_rule["sentimiento_invalid"]
    assert "'ayer por la tarde'" in by_rule["timestamp_invalid"]
    # The report keeps the original values, unchanged.
    original = rejected.set_index("row_number")
    for row, rule in expected.items():
        source = frame.iloc[row]
        if source["comentario"] is None:
            assert pd.isna(original.loc[row, "comentario"])
        else:
            assert original.loc[row, "comentario"] == source["comentario"]
        assert original.loc[row, "batch"] == "mixed.parquet" and original.loc[row, "batch_key"] == batch.key
    assert len(original.loc[[r for r, rule in expected.items() if rule == "comentario_too_long"][0], "comentario"]) == 50_000

    # Good rows: all predicted, with a distribution over the labels; the model knows these texts.
    assert set(preds["id"]) == set(good["id"])
    assert preds["categoria_pred"].isin(LABELS).all()
    probs = preds[[f"prob_{label}" for label in LABELS]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert np.allclose(preds["confianza"], probs.max(axis=1))
    assert (preds["categoria_pred"] == preds["categoria"]).mean() >= 0.9
    assert (preds["model_version"] == MODEL_VERSION).all()

    summary = read_table(root, "reports/batches")
    assert len(summary) == 1 and summary["rows_in"].iloc[0] == n and summary["rows_rejected"].iloc[0] == len(bad)
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
    rules = dict(zip(rejected["row_number"], rejected["rule"]))
    assert rules == {1: "id_duplicate", 4: "id_missing", 7: "id_duplicate,comentario_missing", 9: "id_duplicate"}
    reason7 = rejected.loc[rejected["row_number"] == 7, "reason"].iloc[0]
    assert "appears more than once" in reason7 and "comentario is missing" in reason7
    assert len(part_files(root, "predictions")) == 4  # 11 rows in chunks of 3
    assert "same" not in set(preds["id"])


def test_prepare_chunk_types_and_rejects_untypeable_values():
    from tasks.outputs import PASSTHROUGH, REJECTED_SCHEMA
    from tasks.scoring_rows import prepare_chunk

    chunk = pa.table({
        "id": [1, 2, 3, 4, 5],  # numbers are fine: ids are text in the output
        "comentario": ["El pedido llegó tarde.", "\u00a0\u3000 ", "El precio subió.", "ok", "La web falla."],
        "timestamp": ["2025-01-02T10:00:00", "2025-01-02T10:00:00", "no-date", "2025-01-02T10:00:00+02:00", None],
        "sentimiento": ["-0.5", "0", "1", "abc", None],
        "vendedor": ["ana", "bea", "eva", "rita", None],
    })
    prepared = prepare_chunk(chunk, 100, {104}, 5_000)

    assert prepared.valid.column_names == [*PASSTHROUGH.names, "row_number"]
    assert prepared.valid["row_number"].to_pylist() == [100]
    assert prepared.valid["id"].to_pylist() == ["1"]
    assert prepared.valid["sentimiento"].to_pylist() == [-0.5]
    assert json.loads(prepared.valid["extra_columns"][0].as_py()) == {"vendedor": "ana"}
    rejected = prepared.rejected.to_pylist()
    assert [r["row_number"] for r in rejected] == [101, 102, 103, 104]
    assert [r["rule"] for r in rejected] == ["comentario_blank", "timestamp_invalid", "sentimiento_invalid", "id_duplicate"]
    assert rejected[2]["sentimiento"] == "abc" and rejected[1]["timestamp"] == "no-date"
    assert set(prepared.rejected.column_names) == set(REJECTED_SCHEMA.names) - {"batch", "batch_key", "rejected_at"}


# --------------------------------------------------------------------------------------------------
# 2-4. Unreadable and empty files
# --------------------------------------------------------------------------------------------------


def _without(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.drop(columns=[column])


@pytest.mark.parametrize(
    ("case", "expected_reason"),
    [
        ("text", "not a readable Parquet file"),
        ("zero_bytes", "not a readable Parquet file"),
        ("no_comentario", "required column(s) missing: comentario"),
        ("no_id", "required column(s) missing: id"),
    ],
)
def test_unreadable_batch_is_reported_and_left_in_place(root, storage, shared_dataset, case, expected_reason):
    rows = dataset_rows(shared_dataset, 4, "u")
    data = {
        "text": "id,comentario\n1,hola\n".encode(),
        "zero_bytes": b"",
        "no_comentario": _without(rows, "comentario"),
        "no_id": _without(rows, "id"),
    }[case]
    batch = write_batch(root, "x.parquet", data)
    before = Path(batch.uri).read_bytes()

    result = score(storage, batch)

    assert result.status == "unreadable"
    assert expected_reason in result.reason
    unreadable = read_table(root, "errors/unreadable")
    assert len(unreadable) == 1
    row = unreadable.iloc[0]
    assert row["path"] == batch.uri and row["batch"] == "x.parquet" and row["batch_key"] == batch.key
    assert row["size_bytes"] == len(before) and expected_reason in row["reason"]
    assert Path(batch.uri).read_bytes() == before, "an unreadable batch must stay where it is, unchanged"
    assert ledger_entry(root, batch.key)["status"] == "unreadable"
    assert part_files(root, "predictions") == [] and part_files(root, "errors/rejected") == []


def test_parquet_with_columns_and_no_rows_is_scored_empty(root, storage, shared_dataset):
    empty = pa.Table.from_pandas(dataset_rows(shared_dataset, 4, "e"), preserve_index=False).slice(0, 0)
    batch = write_batch(root, "empty.parquet", empty)

    result = score(storage, batch)

    assert result.status == "scored" and result.reason is None
    assert (result.rows_in, result.rows_predicted, result.rows_rejected) == (0, 0, 0)
    summary = read_table(root, "reports/batches")
    assert len(summary) == 1
    assert summary.iloc[0]["batch"] == "empty.parquet" and summary.iloc[0]["rows_in"] == 0
    assert read_table(root, "errors/unreadable").empty
    assert ledger_entry(root, batch.key)["status"] == "scored"


# --------------------------------------------------------------------------------------------------
# 5. Misclassified rows of a labelled batch
# --------------------------------------------------------------------------------------------------


def test_labelled_batch_reports_misclassified_rows(root, storage, shared_dataset):
    from lstm_model.tokenizer import tokenize
    from tasks.scoring import load_classifier

    frame = dataset_rows(shared_dataset, 24, "lab")
    frame.loc[3, "comentario"] = f"{frame.loc[3, 'comentario']} {UNKNOWN_WORD}"
    frame.loc[20, "categoria"] = None  # unlabelled rows are never "misclassified"
    classifier = load_classifier(storage, MODEL_VERSION, settings())
    predicted = classifier.predict(frame["comentario"].tolist())
    flip = [0, 3, 9, 14, 22]
    for i in flip:
        frame.loc[i, "categoria"] = next(label for label in LABELS if label != predicted[i])
    expected_wrong = {i for i in range(len(frame)) if frame.loc[i, "categoria"] is not None and frame.loc[i, "categoria"] != predicted[i]}
    assert set(flip) <= expected_wrong
    batch = write_batch(root, "labelled.parquet", frame)

    result = score(storage, batch)

    wrong = read_table(root, "errors/misclassified")
    assert set(wrong["row_number"]) == expected_wrong and len(wrong) == len(expected_wrong)
    for column in ("id", "comentario", "tokens", "categoria", "categoria_pred", "confianza", "batch", "batch_key", "model_version"):
        assert column in wrong.columns
    wrong = wrong.set_index("row_number")
    vocab = classifier.bundle.vocab
    for i in expected_wrong:
        row = wrong.loc[i]
        assert row["comentario"] == frame.loc[i, "comentario"] and row["id"] == frame.loc[i, "id"]
        assert row["categoria"] == frame.loc[i, "categoria"] and row["categoria_pred"] == predicted[i]
        assert 0 < row["confianza"] <= 1
        tokens = list(row["tokens"])
        assert all(isinstance(t, str) for t in tokens)
        assert tokens == [t[:5] if t[:5] in vocab else "[UNK]" for t in tokenize(frame.loc[i, "comentario"])][:64]
    assert list(wrong.loc[3, "tokens"])[-1] == "[UNK]", "the unknown word must show as [UNK]"
    assert result.summary["misclassified_rows"] == len(expected_wrong)
    assert result.summary["labelled_rows"] == len(frame) - 1
    assert math.isclose(result.summary["accuracy"], 1 - len(expected_wrong) / (len(frame) - 1))
    preds = read_table(root, "predictions").set_index("row_number")
    assert all(preds.loc[i, "categoria_pred"] == predicted[i] for i in range(len(frame)))


# --------------------------------------------------------------------------------------------------
# 6-7. Rescoring and crashes: exactly once
# --------------------------------------------------------------------------------------------------


def test_scoring_a_batch_again_replaces_its_output(root, storage, shared_dataset):
    frame = dataset_rows(shared_dataset, 10, "r")
    frame.loc[2, "comentario"] = " "
    batch = write_batch(root, "again.parquet", frame)

    first = score(storage, batch, chunk_rows=4)
    second = score(storage, batch, chunk_rows=6)  # what rescore=True does: the same batch, scored anew

    assert (first.rows_predicted, second.rows_predicted) == (9, 9)
    preds, rejected = assert_exactly_once(root, batch.key, 10)
    assert len(preds) == 9 and len(rejected) == 1
    assert preds["scored_at"].nunique() == 1 and len(read_table(root, "reports/batches")) == 1


class Killed(RuntimeError):
    pass


@pytest.mark.parametrize("crash_at", ["ledger", "second_predictions_part"])
def test_crash_then_rerun_scores_every_row_exactly_once(root, storage, shared_dataset, monkeypatch, crash_at):
    import tasks.scoring
    from tasks.batches import scored_keys

    frame = dataset_rows(shared_dataset, 23, "k")
    frame.loc[1, "comentario"] = ""
    frame.loc[12, "id"] = None
    frame.loc[[6, 17], "id"] = "twice"
    batch = write_batch(root, "crash.parquet", frame)

    with monkeypatch.context() as patch:
        if crash_at == "ledger":
            def write_ledger(*args, **kwargs):
                raise Killed("killed before the ledger entry")

            patch.setattr(tasks.scoring, "write_ledger", write_ledger)
        else:
            real_write_part = tasks.scoring.write_part

            def write_part(storage_, table, when, key, part, data):
                if table == "predictions" and part == 1:
                    raise Killed("killed while writing part 1")
                return real_write_part(storage_, table, when, key, part, data)

            patch.setattr(tasks.scoring, "write_part", write_part)
        with pytest.raises(Killed):
            score(storage, batch, chunk_rows=5)

    assert batch.key not in scored_keys(storage), "a batch without its ledger entry must be scored again"
    if crash_at == "ledger":  # killed after its last part: the parts stay until the rerun removes them
        assert part_files(root, "predictions"), "the crashed run should have left its output behind"
    else:  # an exception half-way: the batch takes its partial output away with it
        assert not part_files(root, "predictions") and not part_files(root, "errors/rejected")

    result = score(storage, batch, chunk_rows=7)  # the rerun, even with other chunking

    assert (result.rows_in, result.rows_predicted, result.rows_rejected) == (23, 19, 4)
    preds, rejected = assert_exactly_once(root, batch.key, 23)
    assert len(preds) == 19 and len(rejected) == 4
    assert preds["scored_at"].nunique() == 1 and rejected["rejected_at"].nunique() == 1, "parts of the crashed run survived"
    assert len(read_table(root, "reports/batches")) == 1
    assert ledger_entry(root, batch.key)["rows_in"] == 23


def test_temp_file_of_a_killed_write_does_not_break_duckdb(root, storage, shared_dataset, monkeypatch):
    """A SIGKILL during ``Storage.open_write`` leaves its temporary file behind; after the rerun the
    documented DuckDB query (``read_parquet('<root>/predictions/**/*.parquet')``) must still work.

    The kill is simulated in-process: the write of predictions part 1 stops half-way, and the
    temporary file as it was at that moment (real name, partial bytes) is put back after the
    ``finally`` clause that a SIGKILL would never have run.
    """
    import tasks.outputs

    frame = dataset_rows(shared_dataset, 8, "t").drop(columns=["categoria"])
    batch = write_batch(root, "tmp.parquet", frame)
    real_write_table = tasks.outputs.pq.write_table
    calls, left_behind = [], {}

    def write_table(table, handle, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_write_table(table, handle, **kwargs)
        handle.write(b"PAR1\x15\x04\x15\x00")
        handle.flush()
        left_behind.update({p: p.read_bytes() for p in (root / "predictions").rglob("*") if p.is_file() and p.name.startswith(".")})
        raise Killed("SIGKILL while writing predictions part 1")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.outputs.pq, "write_table", write_table)
        with pytest.raises(Killed):
            score(storage, batch, chunk_rows=4)
    assert len(left_behind) == 1, "expected one temporary file for the interrupted write"
    for path, data in left_behind.items():
        path.write_bytes(data)

    result = score(storage, batch, chunk_rows=4)  # the rerun

    assert result.rows_predicted == 8
    assert len(pd.read_parquet(root / "predictions")) == 8
    total = duckdb.sql(
        f"select count(*) from read_parquet('{root}/predictions/**/*.parquet', hive_partitioning=true)"
    ).fetchall()[0][0]
    assert total == 8


# --------------------------------------------------------------------------------------------------
# 8-9. Output tables readable by pandas and DuckDB; every input column kept
# --------------------------------------------------------------------------------------------------


def test_output_tables_read_with_pandas_and_duckdb(root, storage, shared_dataset):
    from tasks.outputs import predictions_schema

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
    assert all(from_a.loc[i, "pais"] == p for i, p in zip(full["id"], full["pais"]) if i in from_a.index)

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
    assert {"rule", "reason", "row_number", "batch", "batch_key", "rejected_at", "scored_date"} <= set(rejected.columns)
    assert sorted(rejected["rule"]) == ["comentario_blank", "id_missing"]
    assert rejected["reason"].str.len().gt(0).all()
    summaries = pd.read_parquet(root / "reports" / "batches")
    assert sorted(summaries["batch"]) == ["full.parquet", "no_pais.parquet"]


def test_predictions_keep_every_input_column(root, storage, shared_dataset):
    frame = dataset_rows(shared_dataset, 6, "cols")
    frame["vendedor"] = pd.Series(["ana", "bea", None, "dora", "eva", "fer"], dtype=object)
    frame["puntaje"] = [1, 2, 3, 4, 5, 6]
    frame["nota"] = pd.Series(["ñandú \"citado\"", "línea1\nlínea2", "", "x", "y", "z"], dtype=object)
    batch = write_batch(root, "cols.parquet", frame)
    plain = write_batch(root, "plain.parquet", dataset_rows(shared_dataset, 3, "plain"))

    score(storage, batch)
    score(storage, plain)

    preds = read_table(root, "predictions")
    mine = preds[preds["batch_key"] == batch.key].set_index("id")
    assert len(mine) == 6
    for _, row in frame.iterrows():
        out = mine.loc[row["id"]]
        for column in ("pais", "ciudad", "canal", "plataforma", "medio_contacto", "comentario", "categoria", "severidad"):
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


def test_a_failed_rescore_uncommits_the_batch(root, storage, shared_dataset, monkeypatch):
    """--rescore removes the ledger entry before the old output: if the rescore dies, the next run
    scores the batch again instead of skipping it with its output gone."""
    import tasks.scoring
    from tasks.batches import scored_keys

    batch = write_batch(root, "again.parquet", dataset_rows(shared_dataset, 12, "r"))
    score(storage, batch)
    assert batch.key in scored_keys(storage)

    def boom(*args, **kwargs):
        raise Killed("the model broke")

    monkeypatch.setattr(tasks.scoring, "prepare_chunk", boom)
    with pytest.raises(Killed):
        score(storage, batch)
    assert batch.key not in scored_keys(storage)
    assert not part_files(root, "predictions")


def test_prepare_chunk_takes_parquet_types_analysts_produce():
    """Categorical comments (dictionary-encoded), nanosecond timestamps and binary extra columns are
    scored, not rejected or crashed on."""
    from tasks.scoring_rows import prepare_chunk

    chunk = pa.table({
        "id": ["a", "b"],
        "comentario": pa.array(["el paquete llegó roto", "me cobraron de más"]).dictionary_encode(),
        "timestamp": pa.array([1_704_067_200_000_000_001, None], pa.timestamp("ns")),
        "blob": pa.array([b"\xff\x00", None], pa.binary()),
    })
    prepared = prepare_chunk(chunk, 0, set(), 5_000)
    assert prepared.valid.num_rows == 2 and prepared.rejected.num_rows == 0
    assert prepared.valid["comentario"].to_pylist() == ["el paquete llegó roto", "me cobraron de más"]
    assert str(prepared.valid["timestamp"][0].as_py()) == "2024-01-01 00:00:00+00:00"
    assert json.loads(prepared.valid["extra_columns"][0].as_py()) == {"blob": "/wA="}
    text = pa.table({"id": ["a"], "comentario": ["hola"], "timestamp": ["2024-01-01T00:00:00.123456789Z"]})
    assert prepare_chunk(text, 0, set(), 5_000).valid["timestamp"][0].as_py().microsecond == 123456


def test_hidden_files_and_folders_below_the_input_are_skipped(tmp_path):
    from tasks.batches import list_input_files

    for rel in ["a.parquet", "_temporary/0/part-0.parquet", ".half.tmp", "day=1/b.parquet"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    _, found = list_input_files(str(tmp_path))
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in found) == ["a.parquet", "day=1/b.parquet"]


def test_a_storage_error_while_opening_is_not_unreadable(root, storage, shared_dataset):
    """A file that vanished (or an S3 outage) raises, so Prefect retries; it is not recorded as unreadable."""
    from tasks.batches import scored_keys

    batch = write_batch(root, "gone.parquet", dataset_rows(shared_dataset, 4, "g"))
    Path(batch.uri).unlink()
    with pytest.raises(FileNotFoundError):
        score(storage, batch)
    assert batch.key not in scored_keys(storage) and not part_files(root, "errors/unreadable")
