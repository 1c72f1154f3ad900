"""Batch errors say what to do (issue 23): a CSV/JSON/Excel file in incoming/, a column that differs
only by case, an ``--input`` glob that matches nothing, several bad files (one line each), and
``models show`` with a version that is not there."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from test_cli_errors import assert_one_line
from test_cli_errors import comentarios

from helpers import dataset_rows
from helpers import score
from helpers import write_batch
from tasks.common.batch_hints import column_hints
from tasks.common.batch_hints import not_parquet_hint

pytest_plugins = ("s3_support",)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def workbook_bytes(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_excel(out, index=False)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "kind", "convert"),
    [
        ("lote.csv", "CSV", "pd.read_csv(f, dtype=str).to_parquet('lote.parquet', index=False)"),
        ("lote.parquet", "CSV", "pd.read_csv"),  # a CSV under a .parquet name: told by its bytes
        ("lote.json", "JSON", "pd.read_json(f, lines=<True for JSON Lines>, dtype=False)"),
        ("lote.jsonl", "JSON", "pd.read_json"),
        ("lote.xlsx", "Excel", "pd.read_excel(f, dtype=str)"),
    ],
)
def test_a_file_that_is_not_parquet_says_how_to_convert_it(
    root, storage, shared_dataset, name, kind, convert
):
    rows = dataset_rows(shared_dataset, 3, "r")[["id", "comentario"]]
    data = {
        "CSV": rows.to_csv(index=False).encode(),
        "JSON": rows.to_json(orient="records", lines=name.endswith("l"), force_ascii=False).encode(),
        "Excel": workbook_bytes(rows),
    }[kind]
    result = score(storage, write_batch(root, name, data))
    assert result.status == "unreadable"
    assert result.reason.startswith(
        f"not a readable Parquet file: it looks like {kind}, not Parquet: convert it"
    )
    assert convert in result.reason and "\n" not in result.reason
    assert "magic bytes" in result.reason  # Arrow's own words are kept at the end


def test_bytes_that_are_nothing_known_keep_the_plain_reason(root, storage):
    result = score(storage, write_batch(root, "x.parquet", bytes(range(256)) * 4))
    assert result.status == "unreadable" and "it looks like" not in result.reason
    assert result.reason.startswith("not a readable Parquet file: ")


def test_a_column_that_differs_only_by_case_or_spaces_is_named(root, storage, shared_dataset):
    rows = dataset_rows(shared_dataset, 3, "r")[["id", "comentario"]].rename(
        columns={"comentario": "Comentario", "id": " id "}
    )
    result = score(storage, write_batch(root, "mayus.parquet", rows))
    assert result.status == "unreadable"
    assert result.reason == (
        "required column(s) missing: id, comentario (found:  id , Comentario); "
        "found ' id ': rename it to id; found 'Comentario': rename it to comentario"
    )


def test_label_files_get_the_same_hint():
    from tasks.common.validation import DatasetError
    from tasks.feedback.labels import read_label_file

    with pytest.raises(DatasetError, match="found 'Categoria': rename it to categoria"):
        read_label_file("a.csv", b"id,comentario,Categoria\n1,hola,precios\n")


def test_hint_helpers_stay_quiet_when_there_is_nothing_to_say():
    assert column_hints(["comentario"], ["id", "texto"]) == []
    assert not_parquet_hint("lote.parquet", b"\x00\x01\x02binary") is None


def test_an_input_glob_that_matches_nothing_is_an_error_before_the_run(root):
    from flows.configs import ScoreConfig
    from flows.errors import ActionableError
    from flows.errors import check_score

    (root / "incoming").mkdir()
    for pattern in ("incoming/*.parket", "nowhere/*.parquet"):
        with pytest.raises(ActionableError, match=r"matches no file \(--input\)"):
            check_score(ScoreConfig(storage=str(root), input=str(root / pattern)))
    write_batch(root, "a.parquet", pd.DataFrame({"id": ["1"], "comentario": ["x"]}))
    check_score(ScoreConfig(storage=str(root), input=str(root / "incoming/*.parquet")))  # matches: fine
    assert_one_line(
        comentarios("score", "--storage", str(root), "--input", str(root / "incoming/*.csv"), cwd=root),
        1,
        f"comentarios score: input {root}/incoming/*.csv matches no file (--input): check the pattern",
    )


def test_an_s3_glob_that_matches_nothing_is_an_error_too(s3_server, s3_prefix):
    from flows.errors import ActionableError
    from flows.errors import check_glob_matches
    from tasks.store.storage import Storage

    storage = Storage(s3_prefix / "store", s3_server.endpoint)
    s3_server.put(f"{s3_prefix.key}/store/incoming/a.parquet", b"PAR1")
    check_glob_matches(storage, s3_prefix / "store/incoming/*.parquet")
    with pytest.raises(ActionableError, match="matches no file"):
        check_glob_matches(storage, s3_prefix / "store/incoming/*.csv")


def test_several_bad_files_are_one_line_each(root, shared_dataset):
    good = dataset_rows(shared_dataset, 5, "ok")
    write_batch(root, "bueno.parquet", good)
    write_batch(root, "export.csv", good.to_csv(index=False).encode())
    write_batch(root, "mayus.parquet", good.rename(columns={"comentario": "Comentario"}))
    write_batch(root, "datos.json", good.to_json(orient="records").encode())
    done = comentarios("score", "--storage", str(root), cwd=root)
    assert done.code == 1
    lines = done.err_lines[-4:]
    assert lines[0].startswith("comentarios score: 3 batch(es) not scored (each file stays where it is")
    assert [line.split(":", 1)[0] for line in lines[1:]] == [
        "  datos.json",
        "  export.csv",
        "  mayus.parquet",
    ]
    assert "it looks like JSON" in lines[1] and "it looks like CSV" in lines[2]
    assert "found 'Comentario': rename it to comentario" in lines[3]
    assert all(len(line) < 400 for line in lines)
    assert "batches:       1 scored" in done.out  # the good one was scored, and the summary says where


def test_models_show_with_a_version_that_is_not_there_points_to_models_list(root):
    from helpers import MODEL_VERSION

    line = assert_one_line(
        comentarios("models", "show", MODEL_VERSION[:-1] + "x", "--storage", str(root), cwd=root),
        1,
        "comentarios models: model version",
        "not found",
        f"did you mean {MODEL_VERSION}?",
        f"comentarios models list --storage {root} shows the versions there are",
    )
    assert "ModelNotFound" not in line
    assert_one_line(
        comentarios("models", "show", "nada", "--storage", str(root), cwd=root),
        1,
        "comentarios models list --storage",
    )
