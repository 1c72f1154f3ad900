"""One rule for an id that is empty or only white space, in scoring and in training: a missing id
(``id_missing``), with the same reason wherever the row comes from (issue 23). Before, scoring
predicted a row with id "" while training rejected its label as ``id_missing``."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers import LABELS
from helpers import assert_exactly_once
from helpers import comment_rows
from helpers import dataset_rows
from helpers import score
from helpers import write_batch
from tasks.feedback.labels import check_label_file
from tasks.training.dataset import check_training_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BLANK_IDS = ["", "   ", "\t", "\u3000", "\u00a0 \n"]  # ideographic and no-break spaces too


def test_scoring_rejects_blank_ids_as_missing_not_as_duplicates(root, storage, shared_dataset):
    frame = dataset_rows(shared_dataset, 4 + len(BLANK_IDS) + 1, "row")
    blank_rows = list(range(2, 2 + len(BLANK_IDS)))
    for row, blank in zip(blank_rows, BLANK_IDS, strict=True):
        frame.loc[row, "id"] = blank
    frame.loc[len(frame) - 1, "id"] = ""  # "" twice: still missing, not a duplicate
    blank_rows.append(len(frame) - 1)
    batch = write_batch(root, "blank.parquet", frame)

    result = score(storage, batch, chunk_rows=3)  # blank ids in different chunks

    assert (result.rows_predicted, result.rows_rejected) == (len(frame) - len(blank_rows), len(blank_rows))
    preds, rejected = assert_exactly_once(root, batch.key, len(frame))
    rules = dict(zip(rejected["row_number"], rejected["rule"], strict=True))
    assert rules == dict.fromkeys(blank_rows, "id_missing")
    assert (rejected["reason"].str.endswith("is empty or only whitespace")).all()
    assert not preds["id"].str.strip().eq("").any()


def test_an_id_with_text_around_spaces_is_an_id(root, storage, shared_dataset):
    frame = dataset_rows(shared_dataset, 3, "row")
    frame.loc[0, "id"] = " x "
    result = score(storage, write_batch(root, "spaced.parquet", frame))
    assert (result.rows_predicted, result.rows_rejected) == (3, 0)


def test_training_source_and_label_files_give_the_same_rule_and_reason(root, storage, shared_dataset):
    source = comment_rows(len(BLANK_IDS) + 4)
    source["id"] = source["id"].astype(object)
    for row, blank in enumerate(BLANK_IDS):
        source.loc[row, "id"] = blank
    checked = check_training_rows(source, LABELS)
    assert len(checked.rejected) == len(BLANK_IDS) and (checked.rejected["rule"] == "id_missing").all()

    labels = pd.DataFrame(
        {
            "id": BLANK_IDS,
            "comentario": ["no llega"] * len(BLANK_IDS),
            "categoria": ["logistica"] * len(BLANK_IDS),
        }
    )
    _, rejected, _ = check_label_file("a.csv", labels, LABELS)
    assert rejected["rule"].tolist() == ["id_missing"] * len(BLANK_IDS)

    batch = pd.DataFrame({"id": BLANK_IDS, "comentario": ["no llega"] * len(BLANK_IDS)})
    result = score(storage, write_batch(root, "b.parquet", batch))
    _, scored = assert_exactly_once(root, result.key, len(BLANK_IDS))
    # the same reason, word for word, whichever of the three read the row
    assert (
        sorted(checked.rejected["reason"].str.split(";").str[0])
        == sorted(rejected["reason"])
        == sorted(scored["reason"])
    )
