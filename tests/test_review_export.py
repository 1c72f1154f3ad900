"""``comentarios review export``: the order of the queue, the CSV an analyst fills in, and that the
filled file reads back, unchanged, as a label file."""

from __future__ import annotations

import io
from datetime import UTC
from datetime import date
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pytest

from helpers import LABELS
from tasks.feedback.labels import labels_location
from tasks.feedback.labels import read_labels
from tasks.feedback.review_export import EXPORT_COLUMNS
from tasks.feedback.review_export import export_review
from tasks.feedback.review_export import order_for_labelling
from tasks.scoring.outputs import review_schema
from tasks.store.layout import REVIEW
from tasks.store.storage import Storage
from tasks.store.tables import write_part


def queue_rows(*rows: tuple[str, str, str | None, float, str]) -> pd.DataFrame:
    """(id, comentario, categoria_pred, confianza, review_reason) -> review/ rows as read back."""
    return pd.DataFrame(
        [
            {
                "id": i,
                "comentario": text,
                "categoria_pred": pred,
                "confianza": conf,
                "review_reason": reason,
                "model_version": "v1",
                "batch": "b.parquet",
                "scored_date": "2026-03-01",
            }
            for i, text, pred, conf, reason in rows
        ]
    )


QUEUE = queue_rows(
    ("a1", "No llega nada", "logistica", 0.40, "low_confidence"),
    ("a2", "no  llega NADA", "logistica", 0.30, "low_confidence"),  # same text as a1, less confident
    ("a3", "la app se cierra", "ecommerce", 0.50, "low_confidence"),
    ("a4", "😡😡", None, 0.25, "no_readable_words"),
    ("a5", "carísimo", "logistica", 0.35, "low_confidence,models_disagree"),
    ("a6", "nadie contesta", "servicio_cliente", 0.45, "low_confidence"),
)


class TestOrder:
    def test_one_row_per_text_least_confident_first_classes_mixed_no_words_last(self):
        rows = order_for_labelling(QUEUE)
        assert list(rows["id"]) == ["a2", "a6", "a3", "a5", "a4"]
        assert rows.set_index("id").loc["a2", "veces"] == 2
        assert list(rows.columns) == list(EXPORT_COLUMNS) and (rows["categoria"] == "").all()

    def test_comments_already_labelled_are_not_asked_again(self):
        rows = order_for_labelling(QUEUE, skip_ids={"a6"}, skip_texts={"carísimo"})
        assert list(rows["id"]) == ["a2", "a3", "a4"]


def write_review(storage: Storage, frame: pd.DataFrame, day: datetime, key: str) -> None:
    n = len(frame)
    table = pa.table(
        {
            **{
                c: pa.array(frame[c], pa.string(), from_pandas=True)
                for c in ("id", "comentario", "categoria_pred", "review_reason", "model_version", "batch")
            },
            "confianza": pa.array(frame["confianza"], pa.float32()),
            **{f"prob_{label}": pa.array([0.25] * n, pa.float32()) for label in LABELS},
            "batch_key": [key] * n,
            "row_number": list(range(n)),
            "scored_at": pa.array([day] * n, pa.timestamp("us", tz="UTC")),
            "categoria": pa.nulls(n, pa.string()),
        }
    )
    write_part(
        storage, REVIEW, day, key, 0, table.select(review_schema(LABELS).names).cast(review_schema(LABELS))
    )


@pytest.fixture
def storage(tmp_path) -> Storage:
    storage = Storage(str(tmp_path / "storage"))
    write_review(storage, QUEUE.iloc[:3], datetime(2026, 3, 1, tzinfo=UTC), "k1")
    write_review(storage, QUEUE.iloc[3:], datetime(2026, 3, 5, tzinfo=UTC), "k2")
    return storage


class TestExport:
    def test_csv_has_a_bom_and_reads_in_excel_order(self, storage, tmp_path):
        (tmp_path / "out").mkdir()  # --out's folder must exist (only exports/ is created)
        written, queued = export_review(storage, str(tmp_path / "out" / "review.csv"))
        data = (tmp_path / "out" / "review.csv").read_bytes()
        assert data.startswith(b"\xef\xbb\xbf") and (written, queued) == (5, 6)
        frame = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", dtype=str, keep_default_na=False)
        assert list(frame.columns) == list(EXPORT_COLUMNS)
        assert frame.loc[frame["id"] == "a5", "comentario"].item() == "carísimo"

    def test_since_and_limit(self, storage, tmp_path):
        out = tmp_path / "r.csv"
        assert export_review(storage, str(out), since=date(2026, 3, 2)) == (3, 3)
        assert export_review(storage, str(out), limit=2, force=True) == (2, 6)
        assert list(pd.read_csv(out, encoding="utf-8-sig")["id"]) == ["a2", "a6"]

    def test_no_review_table_yet_writes_an_empty_file(self, tmp_path):
        assert export_review(Storage(str(tmp_path / "empty")), str(tmp_path / "r.csv")) == (0, 0)

    def test_filled_copy_goes_into_labels_unchanged_and_is_read_back(self, storage, tmp_path):
        out = tmp_path / "review.csv"
        export_review(storage, str(out))
        # The analyst fills two rows in a spreadsheet that saves ';'-separated (Spanish locale), with a BOM.
        filled = pd.read_csv(out, encoding="utf-8-sig", dtype=str, keep_default_na=False)
        filled.loc[filled["id"] == "a2", "categoria"] = "logística"
        filled.loc[filled["id"] == "a5", "categoria"] = "precios"
        target = tmp_path / "storage" / "labels" / "review-2026-03-05.csv"
        target.parent.mkdir()
        target.write_bytes(filled.to_csv(index=False, sep=";").encode("utf-8-sig"))

        labels = read_labels(storage, labels_location(storage, "auto"), LABELS)
        assert labels.rows.set_index("id")["categoria"].to_dict() == {"a2": "logistica", "a5": "precios"}
        assert labels.unlabelled == 3 and labels.rejected.empty
        again, _ = export_review(storage, str(out), force=True)  # labelled comments leave the queue
        assert again == 3


def test_labels_are_checked_against_the_classes_of_the_model_in_service(storage, tmp_path):
    """A model trained with other --categories: its analysts' labels count as labelled."""
    import json

    from tasks.feedback.review_export import labelled_already
    from tasks.feedback.review_export import model_classes
    from tasks.store.layout import LATEST

    classes = ("app_movil", "logistica", "precios", "servicio_cliente")
    (tmp_path / "storage" / "models" / "v1").mkdir(parents=True)
    (tmp_path / "storage" / "models" / "v1" / "bundle.json").write_text(json.dumps({"labels": classes}))
    (tmp_path / "storage" / LATEST).write_text("v1\n")
    (tmp_path / "storage" / "labels").mkdir()
    (tmp_path / "storage" / "labels" / "a.csv").write_text(
        "id,comentario,categoria\na3,la app se cierra,app_movil\n"
    )
    assert model_classes(storage) == classes
    assert labelled_already(storage, categories=model_classes(storage)) == ({"a3"}, {"la app se cierra"})
    written, _ = export_review(storage, str(tmp_path / "review.csv"))
    assert written == 4  # a3 is labelled; a2 shares a1's text: 6 flagged rows, 4 to ask


def test_cli_export_warns_about_an_unreadable_label_file_and_reads_the_others(storage, tmp_path, capsys):
    from flows.cli import main

    labels = tmp_path / "storage" / "labels"
    labels.mkdir()
    (labels / "excel.csv").write_bytes("id;comentario;categoria\nx;envío;logística\n".encode("cp1252"))
    (labels / "good.csv").write_text(
        "id,comentario,categoria\na3,la app se cierra,ecommerce\n", encoding="utf-8"
    )
    out = tmp_path / "review.csv"
    assert main(["review", "export", "--storage", str(tmp_path / "storage"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: label file excel.csv is not UTF-8 text" in err and "may be in this export again" in err
    assert "a3" not in set(pd.read_csv(out, encoding="utf-8-sig", dtype=str)["id"])  # good.csv was read
