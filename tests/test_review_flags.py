"""Which predictions are flagged for review: the rule, how its threshold is fitted, and the review/ table."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from helpers import LABELS
from helpers import assert_exactly_once
from helpers import dataset_rows
from helpers import read_table
from helpers import score
from helpers import write_batch
from lstm_model.review import ReviewPolicy
from lstm_model.review import fit_review_policy
from lstm_model.review import has_readable_word
from lstm_model.tokenizer import tokenize_arrow
from tasks.scoring.outputs import review_schema

pytestmark = pytest.mark.usefixtures("one_torch_thread")

UNREADABLE = {
    "emoji": "😡😡🙄📦",
    "digits": "12345 678",
    "zero_width": "\u200b\u200c\u200d\ufeff",
    "punctuation": "¡¿?! ... ---",
}


class TestReadableWords:
    def test_a_word_needs_a_letter(self):
        texts = [*UNREADABLE.values(), "ok 👍", "pedido 123", "ÑANDÚ"]
        readable = has_readable_word(tokenize_arrow(pa.array(texts)))
        assert readable.tolist() == [False] * len(UNREADABLE) + [True, True, True]

    def test_null_and_empty_rows_have_no_word(self):
        assert has_readable_word(tokenize_arrow(pa.array([None, "", "a"]))).tolist() == [False, False, True]


class TestPolicyFlags:
    PROBS = np.array(
        [[0.97, 0.01, 0.01, 0.01], [0.60, 0.20, 0.10, 0.10], [0.25, 0.25, 0.25, 0.25], [0.9, 0.1, 0, 0]]
    )

    def test_reasons(self):
        policy = ReviewPolicy(min_confidence=0.8)
        readable = np.array([True, True, False, True])
        known = np.array([True, True, False, False])
        disagree = np.array([False, True, True, False])
        flagged, reasons = policy.flags(self.PROBS, readable, known, disagree)
        assert flagged.tolist() == [False, True, True, True]
        assert reasons == [None, "low_confidence,models_disagree", "no_readable_words", "no_known_words"]

    def test_without_a_fitted_threshold_only_unreadable_and_unknown_rows_are_flagged(self):
        flagged, _ = ReviewPolicy(min_confidence=None).flags(
            self.PROBS, np.array([True, True, True, False]), np.array([True, True, False, False])
        )
        assert flagged.tolist() == [False, False, True, True]


class TestKnownWords:
    def test_a_misspelt_word_is_read_through_its_ngrams_not_flagged_unknown(self):
        """A subword LSTM reads "tarjta" (tarjeta with a letter dropped) through the n-grams it shares
        with "tarjeta": the stems vocabulary lacks it, but the model does read it."""
        from helpers import tiny_bundle
        from lstm_model.predict import Classifier

        bundle, _ = tiny_bundle()
        ids = bundle.vocab.encode_arrow(tokenize_arrow(pa.array(["tarjta"]))).flatten().to_pylist()
        assert bundle.subwords is not None and ids == [1]  # [UNK] as a stem
        scores = Classifier.from_bundle(bundle).score(["tarjta", "zzzz", "de la"])
        assert scores.known.tolist() == [True, False, False]
        reasons = scores.review_reason.to_pylist()
        assert "no_known_words" not in (reasons[0] or "")
        assert reasons[1].startswith("no_known_words") and reasons[2].startswith("no_known_words")


class TestFitReviewPolicy:
    def _probs(self, tops: list[float], classes: list[int]) -> np.ndarray:
        probs = np.full((len(tops), 4), 0.0)
        for row, (top, cls) in enumerate(zip(tops, classes, strict=True)):
            probs[row] = (1 - top) / 3
            probs[row, cls] = top
        return probs

    def _fit(
        self, cal: np.ndarray, val: np.ndarray, catch_target: float, max_flagged: float, cal_readable=None
    ):
        readable = np.ones(len(cal), bool) if cal_readable is None else cal_readable
        truth = np.ones(len(cal), int)  # every calibration row is class 1; the probabilities pick class 0
        return fit_review_policy(
            cal,
            truth,
            readable,
            val,
            np.ones(len(val), bool),
            catch_target=catch_target,
            max_validation_flagged=max_flagged,
        )

    def test_threshold_catches_the_target_share_of_wrong_calibration_rows(self):
        # ten wrong calibration predictions (truth 1, predicted 0) with top probabilities .50 ... .95
        tops = [0.50 + 0.05 * i for i in range(10)]
        cal = self._probs(tops, [0] * 10)
        val = self._probs([0.99] * 100, [0] * 100)
        policy = self._fit(cal, val, 0.8, 0.03)
        assert math.isclose(policy.min_confidence, tops[7])  # the 8th smallest: 8 of 10 caught
        assert policy.calibration_catch_rate == 0.8 and policy.validation_flag_rate == 0.0

    def test_the_validation_cap_wins(self):
        cal = self._probs([0.95] * 10, [0] * 10)  # wrong, and confident
        val_tops = [0.90 + 0.001 * i for i in range(100)]  # right, less confident
        val = self._probs(val_tops, [0] * 100)
        policy = self._fit(cal, val, 0.9, 0.03)
        assert policy.min_confidence < val_tops[3]  # at most 3 of 100 validation rows flagged
        assert policy.validation_flag_rate == 0.03 and policy.calibration_catch_rate == 0.0

    def test_the_in_frame_cap_wins_over_a_lenient_validation_cap(self):
        cal = self._probs([0.95] * 10, [0] * 10)  # wrong, and confident: catching them costs a lot
        val = self._probs([0.99] * 100, [0] * 100)  # validation rows: sure of every one
        in_frame_tops = [0.80 + 0.001 * i for i in range(100)]  # new wording: less sure
        policy = fit_review_policy(
            cal,
            np.ones(len(cal), int),
            np.ones(len(cal), bool),
            val,
            np.ones(len(val), bool),
            catch_target=0.9,
            max_validation_flagged=0.5,
            in_frame_probs=self._probs(in_frame_tops, [0] * 100),
            in_frame_readable=np.ones(100, bool),
            max_in_frame_flagged=0.05,
        )
        assert policy.min_confidence < in_frame_tops[5]  # at most 5 of 100 in-frame rows flagged
        assert policy.in_frame_flag_rate == 0.05 and policy.max_in_frame_flagged == 0.05
        assert policy.validation_flag_rate == 0.0 and policy.calibration_catch_rate == 0.0

    WRONG_TOPS = [0.50 + 0.05 * i for i in range(10)]  # truth 1, predicted 0
    RIGHT_TOPS = [0.60 + 0.004 * i for i in range(100)]  # truth 1, predicted 1, unsure

    def _fit_with_right_rows(self, **caps):
        """Ten wrong calibration rows and a hundred right, unsure ones; sure validation rows."""
        cal = np.concatenate(
            [self._probs(self.WRONG_TOPS, [0] * 10), self._probs(self.RIGHT_TOPS, [1] * 100)]
        )
        val = self._probs([0.99] * 100, [0] * 100)
        return fit_review_policy(
            cal, np.ones(len(cal), int), np.ones(len(cal), bool), val, np.ones(len(val), bool),
            catch_target=0.9, max_validation_flagged=0.03, **caps,
        )  # fmt: skip

    def test_the_cap_on_right_calibration_rows_wins(self):
        """Catching the last wrong rows would flag many right ones: the cap on those stops it."""
        policy = self._fit_with_right_rows(max_right_flagged=0.15)
        assert policy.min_confidence < self.RIGHT_TOPS[15]  # at most 15 of the 100 right rows flagged
        assert policy.right_flag_rate == 0.15 and policy.max_right_flagged == 0.15
        assert policy.calibration_catch_rate == 0.4  # the wrong rows at .50, .55, .60, .65 lie under it
        uncapped = self._fit_with_right_rows()
        assert uncapped.calibration_catch_rate == 0.9 and uncapped.right_flag_rate > 0.15

    def test_the_right_rows_cap_never_drops_the_catch_below_its_floor(self):
        policy = self._fit_with_right_rows(max_right_flagged=0.15, min_catch=0.8)
        assert math.isclose(policy.min_confidence, self.WRONG_TOPS[7])  # 8 of the 10 wrong rows
        assert policy.calibration_catch_rate == 0.8 and policy.min_catch == 0.8
        assert policy.right_flag_rate > 0.15  # the floor won over the cap

    def test_without_in_frame_rows_the_policy_says_so(self):
        policy = self._fit(self._probs([0.6] * 4, [0] * 4), self._probs([0.99] * 10, [0] * 10), 0.5, 0.1)
        assert policy.max_in_frame_flagged is None and policy.in_frame_flag_rate is None
        assert ReviewPolicy.from_dict(policy.to_dict()) == policy

    def test_unreadable_calibration_rows_count_as_caught(self):
        cal = self._probs([0.9, 0.9, 0.25, 0.25], [0, 0, 0, 0])
        readable = np.array([True, True, False, False])
        val = self._probs([0.99] * 10, [0] * 10)
        policy = self._fit(cal, val, 0.5, 0.1, cal_readable=readable)
        assert policy.min_confidence == 0.0  # the two unreadable rows already make half
        assert policy.calibration_catch_rate == 0.5


def test_unreadable_comments_are_flagged_and_given_no_class(root, storage, shared_dataset):
    frame = dataset_rows(shared_dataset, 8, "u")
    for row, text in enumerate(UNREADABLE.values()):
        frame.loc[row, "comentario"] = text
    batch = write_batch(root, "unreadable_rows.parquet", frame)

    result = score(storage, batch)

    preds = read_table(root, "predictions").set_index("row_number")
    assert len(preds) == 8 and result.rows_rejected == 0  # unreadable comments are predictions, not errors
    for row in range(len(UNREADABLE)):
        assert preds.loc[row, "needs_review"] and preds.loc[row, "review_reason"] == "no_readable_words"
        assert pd.isna(preds.loc[row, "categoria_pred"])
        assert np.allclose([preds.loc[row, f"prob_{label}"] for label in LABELS], 0.25)
        assert preds.loc[row, "confianza"] == pytest.approx(0.25)
    assert result.summary.rows_flagged == int(preds["needs_review"].sum()) >= len(UNREADABLE)
    assert sum(n for _, n in result.summary.class_counts) == 8 - len(UNREADABLE)  # no class for them
    review = read_table(root, "review")
    assert set(range(len(UNREADABLE))) <= set(review["row_number"])


def test_review_table_reads_with_pandas_and_duckdb_and_stays_exactly_once(root, storage, shared_dataset):
    frame = dataset_rows(shared_dataset, 12, "r")
    frame.loc[[2, 7], "comentario"] = ["🙄🙄", "42"]
    frame.loc[5, "comentario"] = "xq nadie me contesta el whatsapp??"  # free-form: likely flagged
    batch = write_batch(root, "flagged.parquet", frame)

    score(storage, batch, chunk_rows=5)
    score(storage, batch, chunk_rows=4)  # scored again (what --rescore does): replaced, not added

    assert_exactly_once(root, batch.key, 12)
    preds = read_table(root, "predictions")
    review = pd.read_parquet(root / "review")
    assert list(review.columns) == [*review_schema(LABELS).names, "scored_date"]
    assert sorted(review["row_number"]) == sorted(preds.loc[preds["needs_review"], "row_number"])
    assert review["row_number"].is_unique and review["categoria"].isna().all()
    assert {2, 7} <= set(review["row_number"])
    assert review["scored_at"].nunique() == 1, "rows of the first scoring survived"
    duck = duckdb.sql(
        f"select review_reason, count(*) from read_parquet('{root}/review/**/*.parquet', hive_partitioning=true) "
        "group by 1"
    ).fetchall()
    assert dict(duck) == review.groupby("review_reason").size().to_dict()
    columns = duckdb.sql(
        f"select * from read_parquet('{root}/review/**/*.parquet', hive_partitioning=true)"
    ).columns
    assert columns == [*review_schema(LABELS).names, "scored_date"]
