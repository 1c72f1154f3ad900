"""Label files under labels/: formats (CSV with ; or , and a BOM, JSON Lines, Parquet), the row rules,
rows left empty, conflicts between files, label rows replacing source rows, and the stratified split.

Every label row must end up used, in the rejected report (with its file and reason), or counted as
not labelled (categoria empty): the tests count all three against the rows written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prefect.logging import disable_run_logger

from helpers import LABELS
from helpers import comment_rows
from tasks.common.validation import DatasetError
from tasks.feedback.labels import LabelSet
from tasks.feedback.labels import csv_separator
from tasks.feedback.labels import labels_location
from tasks.feedback.labels import read_label_file
from tasks.feedback.labels import read_labels
from tasks.store.storage import Storage
from tasks.training.dataset import check_training_rows
from tasks.training.dataset import split_dataset
from tasks.training.rows import combine
from tasks.training.rows import evaluation_rows


def write_csv(path: Path, rows: list[list[str]], sep: str, bom: bool) -> Path:
    """A CSV as a spreadsheet saves it: ``sep``-separated, UTF-8 with or without a BOM."""
    out = io.StringIO()
    pd.DataFrame(rows[1:], columns=rows[0]).to_csv(out, sep=sep, index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue().encode("utf-8-sig" if bom else "utf-8"))
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def labels_dir(tmp_path) -> Path:
    return tmp_path / "storage" / "labels"


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path / "storage"))


def read(storage: Storage) -> LabelSet:
    return read_labels(storage, labels_location(storage, "auto"), LABELS)


class TestFormats:
    def test_semicolon_csv_with_bom_accents_and_extra_columns(self, storage, labels_dir):
        write_csv(
            labels_dir / "revision.csv",
            [
                ["id", "comentario", "categoria_pred", "confianza", "categoria"],
                ["r1", "La contraseña no funciona; ni el código", "precios", "0,41", "Ecommerce"],
                ["r2", "El repartidor llegó tardísimo", "precios", "0,38", " logística "],
                ["r3", "Carísimo, subió el precio", "logistica", "0,30", "precios"],
            ],
            sep=";",
            bom=True,
        )
        labels = read(storage)
        rows = labels.rows.set_index("id")
        assert rows.loc["r1", "comentario"] == "La contraseña no funciona; ni el código"  # quoted ; kept
        assert rows["categoria"].to_dict() == {"r1": "ecommerce", "r2": "logistica", "r3": "precios"}
        assert set(rows["source_file"]) == {"revision.csv"}
        assert labels.rejected.empty and labels.unlabelled == 0

    def test_comma_csv_without_bom(self, tmp_path):
        path = write_csv(
            tmp_path / "a.csv",
            [["id", "categoria", "comentario"], ["7", "precios", "caro, muy caro"]],
            ",",
            False,
        )
        frame = read_label_file("a.csv", path.read_bytes())
        assert frame.to_dict("records") == [
            {"id": "7", "categoria": "precios", "comentario": "caro, muy caro"}
        ]

    def test_separator_is_read_from_the_header(self):
        assert csv_separator("id;comentario;categoria\n1;a, b;precios") == ";"
        assert csv_separator("id,comentario,categoria\n1;x,y") == ","
        assert csv_separator("id\tcomentario\tcategoria\n") == "\t"

    def test_json_lines_and_parquet_with_numeric_ids(self, storage, labels_dir):
        write_jsonl(
            labels_dir / "a.jsonl",
            [{"id": "j1", "comentario": "no llega el paquete", "categoria": "logistica"}],
        )
        table = pa.table(
            {
                "id": [10, 11],
                "comentario": ["muy caro", "nadie contesta"],
                "categoria": ["precios", "servicio_cliente"],
            }
        )
        pq.write_table(table, labels_dir / "b.parquet")
        labels = read(storage)
        assert sorted(labels.rows["id"]) == ["10", "11", "j1"]  # ids compared as text
        assert labels.files == ("a.jsonl", "b.parquet")

    def test_hidden_underscore_and_lock_files_are_skipped_and_listed(self, storage, labels_dir):
        write_jsonl(labels_dir / ".a.jsonl.tmp", [{"id": "x"}])
        write_jsonl(labels_dir / "_SUCCESS", [{"id": "x"}])
        (labels_dir / "~$revision.csv").write_bytes(b"\x00excel lock")
        write_jsonl(labels_dir / "_archivo" / "viejo.jsonl", [{"id": "x"}])
        write_jsonl(
            labels_dir / "sub" / "a.jsonl", [{"id": "s1", "comentario": "muy caro", "categoria": "precios"}]
        )
        labels = read(storage)
        assert labels.files == ("sub/a.jsonl",) and not labels.unreadable
        assert labels.skipped == (".a.jsonl.tmp", "_SUCCESS", "_archivo/viejo.jsonl", "~$revision.csv")

    def test_a_file_with_a_header_and_no_rows_reads_as_no_rows(self, storage, labels_dir):
        labels_dir.mkdir(parents=True)
        (labels_dir / "a.csv").write_bytes(b"\xef\xbb\xbfid;comentario;categoria\r\n")
        (labels_dir / "b.csv").write_bytes(b"id,comentario,categoria\n")
        empty = pa.table({c: pa.array([], pa.string()) for c in ("id", "comentario", "categoria")})
        pq.write_table(empty, labels_dir / "c.parquet")
        write_jsonl(labels_dir / "d.jsonl", [{"id": "g1", "comentario": "muy caro", "categoria": "precios"}])
        labels = read(storage)
        assert labels.files == ("a.csv", "b.csv", "c.parquet", "d.jsonl") and not labels.unreadable
        assert labels.rows["id"].tolist() == ["g1"] and labels.rejected.empty and labels.unlabelled == 0

    def test_an_empty_text_file_reads_as_no_rows(self, storage, labels_dir):
        labels_dir.mkdir(parents=True)
        for name, data in [
            ("a.csv", b""),
            ("b.csv", b"\xef\xbb\xbf\r\n"),
            ("c.jsonl", b"\n"),
            ("d.json", b"[ ]"),
        ]:
            (labels_dir / name).write_bytes(data)
        (labels_dir / "e.parquet").write_bytes(b"")  # no Parquet file is empty: unreadable
        labels = read(storage)
        assert labels.files == ("a.csv", "b.csv", "c.jsonl", "d.json") and labels.rows.empty
        assert [name for name, _ in labels.unreadable] == ["e.parquet"]

    def test_pandas_nullable_columns_read_missing_as_missing(self, storage, labels_dir):
        labels_dir.mkdir(parents=True)
        frame = pd.DataFrame(
            {
                "id": pd.array([7, None, 8], dtype="Int64"),
                "comentario": pd.array(["muy caro", "sin id", "nadie etiquetó"], dtype="string"),
                "categoria": pd.array(["precios", "precios", None], dtype="string"),
            }
        )
        frame.to_parquet(labels_dir / "a.parquet")
        labels = read(storage)
        assert labels.rows["id"].tolist() == ["7"] and labels.unlabelled == 1
        assert labels.rejected["rule"].tolist() == ["id_missing"]

    def test_parquet_integer_ids_beside_a_null_keep_every_digit(self, storage, labels_dir):
        labels_dir.mkdir(parents=True)
        table = pa.table(
            {
                "id": pa.array([9007199254740993, None, 12345678901234567], pa.int64()),
                "comentario": ["muy caro", "sin id", "nadie contesta"],
                "categoria": ["precios", "precios", "servicio_cliente"],
            }
        )
        pq.write_table(table, labels_dir / "a.parquet")
        labels = read(storage)
        assert sorted(labels.rows["id"]) == ["12345678901234567", "9007199254740993"]  # 2**53 + 1 exact
        assert labels.rejected["rule"].tolist() == ["id_missing"]

    def test_numeric_ids_read_plainly_in_reasons(self, storage, labels_dir):
        labels_dir.mkdir(parents=True)
        table = pa.table({"id": [7, 7], "comentario": ["a", "b"], "categoria": ["precios", "precios"]})
        pq.write_table(table, labels_dir / "a.parquet")
        reasons = read(storage).rejected["reason"].tolist()
        assert len(reasons) == 2 and all("np." not in r and "7" in r for r in reasons), reasons

    def test_no_labels_folder_and_none(self, storage):
        assert read(storage).rows.empty
        assert labels_location(storage, "none") is None
        assert labels_location(storage, "auto") == storage.uri("labels")
        assert labels_location(storage, "s3://b/l/") == "s3://b/l/"


UNREADABLE = [
    ("excel.csv", "id;comentario;categoria\n1;logística;x\n".encode("cp1252"), "not UTF-8 text"),
    ("b.csv", b"id,comentario\n1,hola\n", "required column(s) missing: categoria"),
    ("c.xlsx", b"PK\x03\x04", "not a readable XLSX workbook"),
    ("c.xls", b"\xd0\xcf\x11\xe0", "unknown kind of file (use .xlsx, .csv"),
    ("d.parquet", b"not parquet", "not a readable Parquet file"),
    ("e.jsonl", b'{"id": 1,\n', "not JSON or JSON Lines"),
    # The rows inside a wrapper object are not records: no top-level id, comentario or categoria.
    ("f.json", b'{"rows": [{"id": "w1", "comentario": "uno", "categoria": "precios"}]}', "column(s) missing"),
]


class TestUnreadableFile:
    """A file that cannot be read is set aside with one line naming it; the other files are read."""

    @pytest.mark.parametrize(("name", "data", "message"), UNREADABLE)
    def test_reader_message_names_the_file(self, name, data, message):
        with pytest.raises(DatasetError, match="label file") as info:
            read_label_file(name, data)
        assert message in str(info.value) and name in str(info.value) and "\n" not in str(info.value)

    def test_the_readable_files_are_still_used(self, storage, labels_dir):
        labels_dir.mkdir(parents=True)
        for name, data, _ in UNREADABLE:
            (labels_dir / name).write_bytes(data)
        write_jsonl(
            labels_dir / "good.jsonl", [{"id": "g1", "comentario": "muy caro", "categoria": "precios"}]
        )
        labels = read(storage)
        assert labels.files == ("good.jsonl",) and labels.rows["id"].tolist() == ["g1"]
        assert [name for name, _ in labels.unreadable] == sorted(name for name, _, _ in UNREADABLE)
        for (name, why), (_, _, message) in zip(labels.unreadable, sorted(UNREADABLE), strict=True):
            assert name in why and message in why
        assert all((labels_dir / name).exists() for name, _, _ in UNREADABLE)  # left for the analyst

    def test_the_review_export_reads_the_others(self, storage, labels_dir):
        from tasks.feedback.review_export import labelled_already

        labels_dir.mkdir(parents=True)
        (labels_dir / "excel.csv").write_bytes(UNREADABLE[0][1])
        write_jsonl(
            labels_dir / "good.jsonl", [{"id": "g1", "comentario": "Muy  caro", "categoria": "precios"}]
        )
        unreadable: list[tuple[str, str]] = []
        assert labelled_already(storage, unreadable=unreadable) == ({"g1"}, {"muy caro"})
        # A label training rejects leaves the comment unlabelled: it is asked again.
        write_jsonl(
            labels_dir / "typo.jsonl", [{"id": "t1", "comentario": "carísimo", "categoria": "precio"}]
        )
        assert labelled_already(storage, unreadable=[]) == ({"g1"}, {"muy caro"})
        assert [name for name, _ in unreadable] == ["excel.csv"]
        with pytest.raises(DatasetError, match="excel.csv is not UTF-8"):
            labelled_already(storage)  # without a list to put it in, it raises


class TestBadRows:
    @pytest.fixture
    def outcome(self, storage, labels_dir):
        write_csv(
            labels_dir / "a.csv",
            [
                ["id", "comentario", "categoria"],
                ["ok-1", "no me llegó el pedido", "logistica"],
                ["bad-cat", "no sé qué es esto", "reclamos"],
                ["bad-blank", "   ", "precios"],
                ["", "fila sin id", "precios"],
                ["dup", "primera", "precios"],
                ["dup", "segunda", "logistica"],
                ["empty-1", "nadie la etiquetó", ""],
                ["empty-2", "tampoco esta", "  "],
            ],
            sep=",",
            bom=False,
        )
        return read(storage)

    def test_each_bad_row_is_reported_with_its_file_and_rule(self, outcome):
        report = outcome.rejected
        assert set(report["source_file"]) == {"a.csv"}
        by_row = dict(zip(report["row_number"], report["rule"], strict=True))
        assert by_row == {
            1: "categoria_invalid",
            2: "comentario_blank",
            3: "id_missing",
            4: "id_duplicate",
            5: "id_duplicate",
        }
        assert "reclamos" in report.loc[report["row_number"] == 1, "reason"].item()

    def test_empty_categoria_is_not_labelled_not_an_error(self, outcome):
        assert outcome.unlabelled == 2
        assert not {"empty-1", "empty-2"} & set(outcome.rejected["id"].astype(str))

    def test_every_row_is_accounted_for(self, outcome):
        assert list(outcome.rows["id"]) == ["ok-1"]
        assert len(outcome.rows) + len(outcome.rejected) + outcome.unlabelled == 8

    def test_blank_lines_are_not_rows(self, storage, labels_dir):
        labels_dir.mkdir(parents=True)
        (labels_dir / "a.csv").write_bytes(
            b"\r\nid,comentario,categoria\r\n\r\nok,caro,precios\r\n  \r\nbad,x,precio\r\n\r\n\r\n"
        )
        labels = read(storage)
        assert labels.files == ("a.csv",) and labels.unlabelled == 0
        assert labels.rows["row_number"].tolist() == [0] and labels.rejected["row_number"].tolist() == [1]

    def test_row_numbers_stay_integers_beside_the_source_report(self, outcome):
        source = comment_rows(4)
        source.loc[0, "categoria"] = "reclamos"
        data = combine(check_training_rows(source), outcome, "src.json")
        assert str(data.rejected["row_number"].dtype) == "Int64"
        assert data.rejected["row_number"].isna().sum() == 1  # the source row has no row number

    def test_rows_stay_arrow_strings_through_the_concat_with_label_rows(self, outcome):
        """Python-object columns cost ~2.5x as much at 664k rows, and the splits copy them."""
        data = combine(check_training_rows(comment_rows(4)), outcome, "src.json")
        assert len(data.rows) > 4  # source and label rows together
        for column in ("id", "comentario", "categoria"):
            assert data.rows[column].dtype == "str", (column, data.rows[column].dtype)


class TestConflictsBetweenFiles:
    @pytest.fixture
    def outcome(self, storage, labels_dir):
        row = {"comentario": "me cobraron el envío dos veces"}
        write_jsonl(labels_dir / "2026-01-a.jsonl", [{**row, "id": "c1", "categoria": "logistica"}])
        write_jsonl(labels_dir / "2026-02-b.jsonl", [{**row, "id": "c1", "categoria": "precios"}])
        write_jsonl(labels_dir / "2026-03-c.jsonl", [{**row, "id": "c1", "categoria": "precios"},
                                                     {"id": "c2", "comentario": "x", "categoria": "precios"}])  # fmt: skip
        return read(storage)

    def test_file_later_in_name_order_wins(self, outcome):
        rows = outcome.rows.set_index("id")
        assert rows.loc["c1", "categoria"] == "precios" and rows.loc["c1", "source_file"] == "2026-03-c.jsonl"
        assert len(outcome.rows) == 2

    def test_earlier_rows_are_reported_and_the_conflict_listed(self, outcome):
        report = outcome.rejected.set_index("source_file")
        assert set(report["rule"]) == {"label_superseded"}
        assert "logistica -> precios" in report.loc["2026-01-a.jsonl", "reason"]
        assert "same categoria" in report.loc["2026-02-b.jsonl", "reason"]
        assert len(outcome.conflicts) == 1 and "2026-01-a.jsonl says logistica" in outcome.conflicts[0]

    def test_one_conflict_line_per_id_however_many_files_disagree(self, storage, labels_dir):
        row = {"id": "k1", "comentario": "me cobraron el envío dos veces"}
        write_jsonl(labels_dir / "2026-01.jsonl", [{**row, "categoria": "precios"}])
        write_jsonl(labels_dir / "2026-02.jsonl", [{**row, "categoria": "logistica"}])
        write_jsonl(labels_dir / "2026-03.jsonl", [{**row, "categoria": "ecommerce"}])
        labels = read(storage)
        assert labels.conflicts == (
            "id k1: 2026-01.jsonl says precios, 2026-02.jsonl says logistica, 2026-03.jsonl says "
            "ecommerce (kept)",
        )
        assert len(labels.rejected) == 2  # both earlier rows are in the report


class TestCombinedWithTheSource:
    def test_label_row_replaces_the_source_row_and_both_are_accounted_for(self):
        source = comment_rows(8)
        checked = check_training_rows(source)
        labels = LabelSet(
            rows=pd.DataFrame(
                {
                    "id": ["id-1", "new-1"],
                    "comentario": ["texto corregido", "otro"],
                    "categoria": ["precios", "precios"],
                    "source_file": ["r.csv", "r.csv"],
                    "row_number": [0, 1],
                }
            ),
            rejected=pd.DataFrame(),
        )
        data = combine(checked, labels, "src.json")
        rows = data.rows.set_index("id")
        assert rows.loc["id-1", "categoria"] == "precios" and rows.loc["id-1", "origin"] == "labels"
        assert (rows["origin"] == "source").sum() == 7
        replaced = data.rejected.set_index("id")
        assert replaced.loc["id-1", "rule"] == "replaced_by_label"
        assert replaced.loc["id-1", "source_file"] == "src.json"
        assert "r.csv" in replaced.loc["id-1", "reason"]
        assert data.summary["label_rows"] == 2 and data.summary["source_rows_replaced_by_labels"] == 1

    def test_each_origin_is_split_on_its_own_and_label_test_rows_are_their_own_set(self):
        source = comment_rows(40).assign(origin="source")
        labels = comment_rows(20).assign(id=[f"lab-{i}" for i in range(20)], origin="labels")
        with disable_run_logger():
            splits = split_dataset.fn(pd.concat([source, labels], ignore_index=True), 0.1, 0.1, 42)
        counts = {name: part.groupby("origin").size().to_dict() for name, part in splits.items()}
        assert counts == {
            "train": {"source": 32, "labels": 12},
            "val": {"source": 4, "labels": 4},
            "test": {"source": 4, "labels": 4},
        }
        rows = evaluation_rows(splits)
        assert rows.groupby("set").size().to_dict() == {"labels": 4, "test": 4}
        assert set(rows.loc[rows["set"] == "labels", "id"]) <= set(labels["id"])
