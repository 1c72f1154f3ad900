"""Label files that must not be trained on as they are, and labels that leave no source row (issue 22).

* Item 7: a label file still being copied (402 of 1,200 rows, the last row cut) was trained on and
  promoted. Now a file modified less than ``--min-file-age`` seconds ago waits for the next training
  (logged, listed in ``bundle.json``), and a cut last row is an error for that file: the run trains on
  the others, does not promote, and ends with one line naming it.
* Item 8: a label file relabelling every source id failed the training with ``KeyError: 'test'``
  (no source row left, so no ``test`` evaluation set): the threshold is then judged on the label
  rows' test part; a training with no test row at all fails with a clear message.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import LABELS
from helpers import small_train_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _labels_csv(dataset: pd.DataFrame, n: int, start: int = 0, sep: str = ",") -> str:
    rows = dataset.iloc[start : start + n][["id", "comentario", "categoria"]]
    return rows.to_csv(index=False, sep=sep)


def _landed(path: Path, seconds_ago: float = 600) -> None:
    then = time.time() - seconds_ago
    os.utime(path, (then, then))


def _cut(text: str, rows_kept: int) -> str:
    """``text`` cut in the middle of data row ``rows_kept + 1``: a copy caught half-way."""
    lines = text.splitlines(keepends=True)
    return "".join(lines[: rows_kept + 1]) + lines[rows_kept + 1][:45]


# ----------------------------------------------------------------------------------- 7. cut files


def test_a_label_file_cut_at_its_end_is_unreadable(shared_dataset):
    from tasks.common.validation import DatasetError
    from tasks.feedback.labels import read_label_file

    whole = _labels_csv(shared_dataset, 1200)
    assert len(read_label_file("whole.csv", whole.encode())) == 1200
    no_final_newline = whole.rstrip("\n")
    assert len(read_label_file("no_newline.csv", no_final_newline.encode())) == 1200  # complete: fine
    semicolons = _labels_csv(shared_dataset, 1200, sep=";")
    assert len(read_label_file("semicolons.csv", semicolons.rstrip("\n").encode())) == 1200

    cut = _cut(whole, 402)
    assert cut.count("\n") == 403 and not cut.endswith("\n")
    with pytest.raises(DatasetError, match=r"cut.csv ends in a cut row: its last line has 2 of 3 fields"):
        read_label_file("cut.csv", cut.encode())
    with pytest.raises(DatasetError, match="ends in a cut row"):
        read_label_file("cut_semicolons.csv", _cut(semicolons, 402).encode())
    assert len(read_label_file("no_newline.csv", no_final_newline.encode(), LABELS)) == 1200
    # a cut inside the last cell, or right before it, leaves every field there but no class
    last_category = whole.splitlines()[1200].rsplit(",", 1)[1]
    for kept in (3, 0):
        cut_in_cell = no_final_newline[: len(no_final_newline) - len(last_category) + kept]
        assert len(read_label_file("cut_cell.csv", cut_in_cell.encode())) == 1200  # without the classes
        with pytest.raises(DatasetError, match=r"cut_cell.csv ends in a cut row: its last line's categoria"):
            read_label_file("cut_cell.csv", cut_in_cell.encode(), LABELS)
    with pytest.raises(DatasetError, match="not a readable CSV"):  # inside a quoted cell
        read_label_file("quoted.csv", (whole + 'x-1,"el paquete llegó').encode())

    records = [
        json.dumps(r, ensure_ascii=False)
        for r in json.loads(shared_dataset.head(50).to_json(orient="records"))
    ]
    with pytest.raises(DatasetError, match="not JSON or JSON Lines"):
        read_label_file("cut.jsonl", ("\n".join(records))[:-20].encode())
    with pytest.raises(DatasetError, match="not JSON or JSON Lines: Expecting"):
        read_label_file("cut.json", ("[" + ",\n".join(records))[:-20].encode())
    with pytest.raises(DatasetError, match="the array is not closed"):  # cut right after a record
        read_label_file("unclosed.json", ("[" + ",\n".join(records)).encode())
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(shared_dataset.head(50)), buffer)
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        read_label_file("cut.parquet", buffer.getvalue()[:-100])


def test_label_files_younger_than_min_file_age_wait(tmp_path, shared_dataset):
    from tasks.feedback.labels import labels_location
    from tasks.feedback.labels import read_labels
    from tasks.store.storage import Storage

    storage = Storage(str(tmp_path))
    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "old.csv").write_text(_labels_csv(shared_dataset, 20))
    _landed(folder / "old.csv")
    (folder / "new.csv").write_text(_labels_csv(shared_dataset, 20, start=20))
    location = labels_location(storage, "auto")

    labels = read_labels(storage, location, LABELS, min_file_age=60)
    assert labels.files == ("old.csv",) and labels.waiting == ("new.csv",) and len(labels.rows) == 20
    everything = read_labels(storage, location, LABELS, min_file_age=0)
    assert everything.files == ("new.csv", "old.csv") and not everything.waiting


def test_train_leaves_a_young_label_file_and_fails_on_a_cut_one(
    prefect_harness, shared_dataset, shared_dataset_path, tmp_path, capsys
):
    from flows.cli import main
    from flows.train import LabelFilesUnreadable
    from flows.train import train_lstm
    from tasks.registry.versions import current_latest
    from tasks.store.storage import Storage

    folder = tmp_path / "labels"
    folder.mkdir()
    (folder / "a_good.csv").write_text(_labels_csv(shared_dataset, 30))
    (folder / "b_copying.csv").write_text(_cut(_labels_csv(shared_dataset, 1200, start=100), 402))
    for name in ("a_good.csv", "b_copying.csv"):
        _landed(folder / name)
    (folder / "c_young.csv").write_text(_labels_csv(shared_dataset, 10, start=40))
    config = small_train_config(
        shared_dataset_path, tmp_path, epochs=1, min_file_age=120, promote_threshold=0.0
    )

    state = train_lstm(config, return_state=True)

    assert state.is_failed()
    with pytest.raises(LabelFilesUnreadable) as failure:
        state.result()
    message = str(failure.value)
    assert message.startswith("1 label file(s) not read; "), message
    assert "(not promoted): label file b_copying.csv ends in a cut row" in message
    assert current_latest(Storage(str(tmp_path))) is None  # threshold 0, yet not promoted
    (version,) = [p.name for p in (tmp_path / "models").iterdir() if (p / "bundle.json").exists()]
    data = json.loads((tmp_path / "models" / version / "bundle.json").read_text(encoding="utf-8"))["data"]
    assert data["label_files"] == ["a_good.csv"] and data["label_rows"] == 30
    assert [f["file"] for f in data["label_files_unreadable"]] == ["b_copying.csv"]
    assert data["label_files_waiting"] == ["c_young.csv"]
    assert main(["models", "show", version, "--storage", str(tmp_path)]) == 0
    assert "  waiting:      c_young.csv (younger than --min-file-age)" in capsys.readouterr().out


# ----------------------------------------------------------------------- 8. no source row is left


def test_labels_relabelling_every_source_id_train_and_judge_on_the_label_rows(
    prefect_harness, shared_dataset, shared_dataset_path, tmp_path
):
    from flows.train import train_lstm

    folder = tmp_path / "labels"
    folder.mkdir()
    relabelled = shared_dataset[["id", "comentario", "categoria"]]
    (folder / "everything.csv").write_text(relabelled.to_csv(index=False))

    summary = train_lstm(small_train_config(shared_dataset_path, tmp_path, promote_threshold=0.0))

    assert summary.label_rows == len(shared_dataset) and summary.valid_rows == len(shared_dataset)
    assert "test" not in summary.metrics and summary.metrics["labels"]["macro_f1"] > 0
    assert summary.promoted  # threshold 0, first model: judged on the label rows
    assert any("test macro-F1" in reason for reason in summary.promotion_reasons)
    data = json.loads((Path(summary.model_uri) / "bundle.json").read_text(encoding="utf-8"))["data"]
    assert data["source_rows_used"] == 0 and data["source_rows_replaced_by_labels"] == len(shared_dataset)


def test_no_test_row_at_all_is_a_clear_error():
    from tasks.common.validation import DatasetError
    from tasks.training.dataset import check_classes
    from tasks.training.rows import gate_set

    assert gate_set(["test", "labels", "freeform"]) == "test"
    assert gate_set(["labels", "freeform"]) == "labels"
    with pytest.raises(DatasetError, match="the test split has no rows"):
        gate_set(["freeform"])
    rows = pd.DataFrame({"categoria": [label for label in LABELS for _ in range(10)]})
    empty = rows.iloc[0:0]
    with pytest.raises(DatasetError, match=r"the test split has no rows of class .* \(0 rows in it"):
        check_classes(rows, {"train": rows, "val": rows, "test": empty}, LABELS, 10)
