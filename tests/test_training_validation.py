"""Row rules of the labelled dataset (GX-backed) and parsing of the source file."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helpers import comment_rows
from tasks.common.records import parse_records
from tasks.common.schema import COLUMNS
from tasks.common.validation import DatasetError
from tasks.training.dataset import check_training_rows
from tasks.training.dataset import fingerprint

# id of the broken row -> (field to break, bad value, rule that must name it)
BROKEN = {
    "id-0": ("comentario", None, "comentario_missing"),
    "id-1": ("comentario", "  \t ", "comentario_blank"),
    "id-2": ("comentario", 5, "comentario_missing"),
    "id-3": ("categoria", "otra", "categoria_invalid"),
    "id-4": ("sentimiento", 3.0, "sentimiento_out_of_range"),
    "id-5": ("sentimiento", "abc", "sentimiento_out_of_range"),
    "id-6": ("timestamp", "ayer por la tarde", "timestamp_unparseable"),
    "id-7": ("severidad", "extrema", "severidad_invalid"),
}
DUPLICATE_ID = "id-9"  # given to rows 9 and 10: both copies are rejected, by design
NULL_ID_ROW = 11  # position of the row whose id is null


def broken_frame() -> pd.DataFrame:
    """20 rows as parsed from JSON: 8 with one broken field each, a repeated id (x2), a null id."""
    rows = comment_rows(20).to_dict("records")
    for row in rows:
        if row["id"] in BROKEN:
            column, value, _ = BROKEN[row["id"]]
            row[column] = value
    rows[10]["id"] = DUPLICATE_ID
    rows[NULL_ID_ROW]["id"] = None
    rows[NULL_ID_ROW]["comentario"] = "fila sin id"
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def outcome():
    frame = broken_frame()
    return frame, check_training_rows(frame)


class TestRejectedRows:
    def test_each_broken_row_is_named_with_its_rule(self, outcome):
        _, result = outcome
        report = result.rejected.set_index("id", drop=False)
        for row_id, (column, _, rule) in BROKEN.items():
            assert row_id in report.index, f"{row_id} (bad {column}) was not rejected"
            assert rule in report.loc[row_id, "rule"].split(","), (row_id, report.loc[row_id, "rule"])

    def test_both_copies_of_a_duplicated_id_are_rejected(self, outcome):
        _, result = outcome
        copies = result.rejected[result.rejected["id"] == DUPLICATE_ID]
        assert len(copies) == 2
        assert (copies["rule"] == "id_duplicate").all()
        assert DUPLICATE_ID not in result.valid["id"].tolist()

    def test_null_id_row_is_rejected(self, outcome):
        _, result = outcome
        nameless = result.rejected[result.rejected["id"].isna()]
        assert nameless["comentario"].tolist() == ["fila sin id"]
        assert nameless["rule"].str.split(",").iloc[0][0] == "id_missing"

    def test_reasons_show_the_bad_value(self, outcome):
        _, result = outcome
        reasons = dict(zip(result.rejected["id"], result.rejected["reason"], strict=True))
        assert "'otra'" in reasons["id-3"]
        assert "3.0" in reasons["id-4"]
        assert "'abc'" in reasons["id-5"]
        assert "(5)" in reasons["id-2"]
        assert "'extrema'" in reasons["id-7"]
        assert all(isinstance(r, str) and r and "\n" not in r for r in result.rejected["reason"])

    def test_report_keeps_every_input_column_plus_rule_and_reason(self, outcome):
        frame, result = outcome
        assert list(result.rejected.columns) == [*frame.columns, "rule", "reason"]
        assert set(COLUMNS) <= set(result.rejected.columns)

    def test_report_keeps_the_original_values(self, outcome):
        _, result = outcome
        report = result.rejected.set_index("id")
        assert report.loc["id-2", "comentario"] == 5  # not coerced to null
        assert report.loc["id-5", "sentimiento"] == "abc"

    def test_no_row_is_lost_or_counted_twice(self, outcome):
        frame, result = outcome
        assert len(result.valid) + len(result.rejected) == len(frame)
        expected_rejected = len(BROKEN) + 2 + 1
        assert len(result.rejected) == expected_rejected
        assert set(result.valid["id"]).isdisjoint(set(result.rejected["id"].dropna()))

    def test_valid_rows_are_the_untouched_ones(self, outcome):
        frame, result = outcome
        expected = [f"id-{i}" for i in (8, 12, 13, 14, 15, 16, 17, 18, 19)]
        assert result.valid["id"].tolist() == expected
        assert list(result.valid.columns) == list(frame.columns)

    def test_failure_counts_per_rule(self, outcome):
        _, result = outcome
        assert result.failures["id_duplicate"] == 2
        assert result.failures["id_missing"] == 1
        assert result.failures["comentario_missing"] == 2
        assert result.failures["sentimiento_out_of_range"] == 2
        assert result.failures["categoria_invalid"] == 1


class TestCleanFrame:
    def test_all_rows_valid_and_empty_report(self):
        frame = comment_rows(8)
        result = check_training_rows(frame)
        assert len(result.valid) == 8
        assert result.rejected.empty
        assert list(result.rejected.columns) == [*frame.columns, "rule", "reason"]
        assert set(result.failures.values()) == {0}

    def test_sentimiento_bounds_are_inclusive(self):
        frame = comment_rows(4)
        frame["sentimiento"] = [-1.0, 1.0, 0.0, -0.99]
        assert len(check_training_rows(frame).valid) == 4

    def test_great_expectations_keeps_nothing_of_the_validated_frame(self):
        """GX's engine used to hold the last validated frame (the whole training source, ~130 MB at
        664k rows) in a module-level context until the process ended."""
        import gc

        check_training_rows(comment_rows(8))
        gc.collect()
        held = [o for o in gc.get_objects() if type(o).__name__ == "PandasBatchData"]
        assert held == []

    def test_custom_category_set(self):
        frame = comment_rows(8)
        result = check_training_rows(frame, categories=("ecommerce", "logistica"))
        assert sorted(result.valid["categoria"].unique()) == ["ecommerce", "logistica"]
        assert set(result.rejected["rule"]) == {"categoria_invalid"}


class TestDatasetErrors:
    def test_missing_comentario_column_is_a_one_line_error(self):
        frame = comment_rows(4).drop(columns=["comentario"])
        with pytest.raises(DatasetError) as info:
            check_training_rows(frame)
        message = str(info.value)
        assert "\n" not in message
        assert "missing: comentario" in message

    def test_several_missing_columns_are_all_named(self):
        frame = comment_rows(4).drop(columns=["comentario", "categoria"])
        with pytest.raises(DatasetError, match="categoria") as info:
            check_training_rows(frame)
        assert "comentario" in str(info.value)

    def test_all_rows_bad_is_an_error(self):
        frame = comment_rows(4, categoria="otra")
        with pytest.raises(DatasetError, match="no valid rows left") as info:
            check_training_rows(frame)
        assert "categoria_invalid: 4" in str(info.value)
        assert "\n" not in str(info.value)

    def test_dataset_error_is_a_value_error(self):
        assert issubclass(DatasetError, ValueError)


class TestFingerprint:
    def test_independent_of_row_order_but_not_of_labels(self):
        frame = comment_rows(8)
        assert fingerprint(frame) == fingerprint(frame.iloc[::-1])
        relabelled = frame.assign(categoria=frame["categoria"].iloc[::-1].to_numpy())
        assert fingerprint(relabelled) != fingerprint(frame)

    def test_the_same_value_as_hashing_the_whole_sorted_list_a_chunk_at_a_time(self, shared_dataset):
        """Built a chunk at a time (Arrow sorts), it is still sha256(json.dumps(sorted(rows))): the
        versions of models trained before keep their fingerprints. Accents, emoji and ids that sort
        differently as text than as numbers included."""
        import hashlib
        import json

        frame = shared_dataset[["id", "comentario", "categoria"]].astype(str)
        frame.loc[0, "comentario"] = 'envío 😀 \u00f1 ñandú "comillas"'
        frame.loc[1, "id"] = "10"
        frame.loc[2, "id"] = "9"
        rows = sorted(zip(frame["id"], frame["comentario"], frame["categoria"], strict=True))
        expected = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
        assert fingerprint(frame, chunk=7) == expected == fingerprint(frame.sample(frac=1, random_state=1))


# ----------------------------------------------------------------------------------------------- source

RECORDS = [{"id": "a", "comentario": "Hola, ¿qué tal?"}, {"id": "b", "comentario": "El envío llegó tarde"}]


class TestParseJsonArray:
    def test_array_of_objects(self):
        frame = parse_records(json.dumps(RECORDS, ensure_ascii=False).encode(), "x.json")
        assert frame.to_dict("records") == RECORDS

    def test_leading_whitespace_and_bom(self):
        data = b"\xef\xbb\xbf \n" + json.dumps(RECORDS).encode()
        assert parse_records(data, "x.json")["id"].tolist() == ["a", "b"]

    def test_streamed_in_small_blocks_it_reads_what_json_reads(self, monkeypatch, tmp_path):
        """Records cut at every possible place by the reader's blocks: strings holding brackets, braces,
        commas, escaped quotes and newlines, nested values, pretty-printing, non-ASCII text."""
        import tasks.common.records

        records = [
            {"id": "a", "comentario": 'dijo "ya]" y {nada},\n otra línea', "extra": {"x": [1, 2]}},
            {"id": "b", "comentario": "emoji 😡 y ñ", "extra": {"x": []}, "sentimiento": -0.5},
            {"id": "c", "comentario": "[no es un array]", "sentimiento": 1},
        ]
        path = tmp_path / "pretty.json"
        path.write_text(json.dumps(records, ensure_ascii=False, indent=3), encoding="utf-8")
        monkeypatch.setattr(tasks.common.records, "_BLOCK", 7)
        frame = parse_records(path, "pretty.json")
        assert frame["id"].tolist() == ["a", "b", "c"]
        assert frame["comentario"].tolist() == [r["comentario"] for r in records]
        assert frame["sentimiento"].tolist()[1:] == [-0.5, 1]

    def test_dates_stay_text_and_absent_columns_stay_absent(self):
        data = json.dumps(
            [{"id": "a", "timestamp": "2024-08-17T14:06:08", "comentario": "2024-01-01"}]
        ).encode()
        frame = parse_records(data, "x.json")
        assert frame.to_dict("records") == [
            {"id": "a", "timestamp": "2024-08-17T14:06:08", "comentario": "2024-01-01"}
        ]
        assert "pais" not in frame.columns  # the dataset's other columns are absent, not null


class TestParseJsonLines:
    def test_one_object_per_line(self):
        data = "\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS).encode()
        assert parse_records(data, "x.jsonl").to_dict("records") == RECORDS

    def test_blank_lines_crlf_and_bom(self):
        data = ("\ufeff" + "\r\n".join([json.dumps(RECORDS[0]), "", json.dumps(RECORDS[1]), ""])).encode()
        assert parse_records(data, "x.jsonl")["id"].tolist() == ["a", "b"]

    @pytest.mark.parametrize(
        ("data", "columns"),
        [
            (b'{"id": "1", "pais": null}\n{"id": "2"}\n', ["id", "pais"]),  # present, null: kept
            (b'{"id": "1", "pais": null} {"id": "2", "pais": null}\n', ["id", "pais"]),  # two on a line
            (b'{"id": "1", "pais": null}\r{"id": "2", "pais": null}\r', ["id", "pais"]),  # lone CRs
            (b'{"id": "1", "cliente": {"pais": "PE"}}\n', ["id", "cliente"]),  # nested: not a column
            (b'{"id": "1", "comentario": "\\"pais\\": no"}\n', ["id", "comentario"]),  # in a text
            (b'{"rows": [{"id": "1", "categoria": "precios"}]}\n', ["rows"]),  # a wrapper object
        ],
    )
    def test_a_column_null_in_every_row_is_kept_only_if_a_record_names_it(self, data, columns):
        assert list(parse_records(data, "x.jsonl").columns) == columns

    def test_values_are_kept_as_given(self):
        frame = parse_records(b'{"id": 1, "sentimiento": "abc"}\n{"id": "2", "sentimiento": 0.5}', "x.jsonl")
        assert frame["id"].tolist() == [1, "2"]
        assert frame["sentimiento"].tolist() == ["abc", 0.5]


class TestParseErrors:
    @pytest.mark.parametrize("data", [b"id,comentario\na,hola\n", b"<html>not found</html>", b'[{"id": 1},'])
    def test_not_json_is_a_one_line_dataset_error(self, data):
        with pytest.raises(DatasetError, match="x.txt is not JSON or JSON Lines") as info:
            parse_records(data, "x.txt")
        assert "\n" not in str(info.value)

    @pytest.mark.parametrize("data", [b"", b"   \n\t\n", b"\xef\xbb\xbf"])
    def test_empty_file(self, data):
        with pytest.raises(DatasetError, match="x.json is empty"):
            parse_records(data, "x.json")

    def test_empty_array(self):
        with pytest.raises(DatasetError, match="holds no records"):
            parse_records(b"[]", "x.json")

    @pytest.mark.parametrize("data", [b"[1, 2]", b'["a"]', b'{"id": 1}\n[1]'])
    def test_values_that_are_not_objects(self, data):
        with pytest.raises(DatasetError, match="list of JSON objects"):
            parse_records(data, "x.json")

    def test_json_array_error_names_the_bad_line(self):
        data = b'[\n {"id": "a"},\n {"id": "b"},\n {"id": oops}\n]'
        with pytest.raises(DatasetError, match="x.json is not JSON or JSON Lines: .* at line 4"):
            parse_records(data, "x.json")

    def test_json_lines_error_names_the_bad_line(self):
        data = b'{"id": "a"}\n{"id": "b"}\n{"id": oops}\n'
        with pytest.raises(DatasetError) as info:
            parse_records(data, "x.jsonl")
        assert "line 3" in str(info.value), str(info.value)

    def test_non_utf8_bytes_are_a_dataset_error(self):
        # A Latin-1 export of Spanish text is a plausible wrong input; it should get the same
        # one-line DatasetError as any other unreadable file, not a raw UnicodeDecodeError.
        data = json.dumps([{"id": "a", "comentario": "canción"}], ensure_ascii=False).encode("latin-1")
        with pytest.raises(DatasetError) as info:
            parse_records(data, "x.json")
        assert "\n" not in str(info.value)


class TestClassCoverage:
    def test_every_class_needs_ten_valid_rows(self):
        from tasks.training.dataset import check_classes

        frame = comment_rows(44)  # 11 rows per class
        check_classes(frame, {"train": frame}, ("ecommerce", "logistica", "precios", "servicio_cliente"), 10)
        short = frame.drop(index=frame.index[frame["categoria"] == "precios"][:2])
        with pytest.raises(DatasetError, match=r"^too few valid rows to train: precios 9 \(at least 10"):
            check_classes(
                short, {"train": short}, ("ecommerce", "logistica", "precios", "servicio_cliente"), 10
            )

    def test_a_split_without_a_class_is_refused(self):
        from tasks.training.dataset import check_classes

        frame = comment_rows(44)
        test_part = frame[frame["categoria"] != "logistica"]
        with pytest.raises(DatasetError, match="the test split has no rows of class logistica"):
            check_classes(frame, {"train": frame, "test": test_part}, ("ecommerce", "logistica"), 10)
