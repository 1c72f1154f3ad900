"""Learning from the comments already scored: which texts of ``predictions/`` a training reads, and
what the subword LSTM does with them (``tasks/training/scored_texts.py``, ``fit_classifier(unlabelled=)``).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import comment_rows
from tasks.store.tables import newest_first
from tasks.training.scored_texts import collect_texts


def _batch(*rows):
    """One batch of (comentario, needs_review) rows, as the reader gives them."""
    return pd.Series([r[0] for r in rows], dtype=object), pd.Series([r[1] for r in rows], dtype=object)


class TestCollectTexts:
    """The pure choice of texts: distinct, unflagged, unknown, bounded."""

    def test_keeps_distinct_unflagged_comments_in_order(self):
        texts, flagged, known = collect_texts(
            [_batch(("el envío no llega", False), ("la app se cierra", False))], 10, set()
        )
        assert texts == ["el envío no llega", "la app se cierra"] and (flagged, known) == (0, 0)

    def test_a_comment_repeated_in_other_case_or_spacing_is_read_once(self):
        texts, _, _ = collect_texts(
            [_batch(("El envío  no llega", False)), _batch(("el ENVÍO no llega ", False))], 10, set()
        )
        assert texts == ["El envío  no llega"]

    def test_flagged_rows_are_left_out_and_counted(self):
        texts, flagged, _ = collect_texts(
            [_batch(("no sé", True), ("el cobro doble", False), ("???", True))], 10, set()
        )
        assert texts == ["el cobro doble"] and flagged == 2

    def test_a_text_of_the_splits_or_evaluation_sets_is_never_learnt(self):
        texts, _, known = collect_texts(
            [_batch(("El pedido llegó tarde", False), ("me cobraron de más", False))],
            10,
            {"el pedido llegó tarde"},
        )
        assert texts == ["me cobraron de más"] and known == 1

    def test_blank_and_missing_comments_are_skipped(self):
        texts, flagged, _ = collect_texts([_batch((None, False), ("   ", False), ("ok", False))], 10, set())
        assert texts == ["ok"] and flagged == 0

    def test_stops_at_max_rows_without_reading_further(self):
        read = []

        def batches():
            for i in range(100):
                read.append(i)
                yield _batch((f"comentario {i}", False))

        texts, _, _ = collect_texts(batches(), 3, set())
        assert texts == ["comentario 0", "comentario 1", "comentario 2"]
        assert len(read) <= 4  # the reader is not drained past the bound


def test_parts_are_read_newest_partition_first():
    parts = [
        "predictions/scored_date=2026-01-02/b-00000.parquet",
        "predictions/scored_date=2026-03-01/a-00001.parquet",
        "predictions/scored_date=2026-03-01/a-00000.parquet",
    ]
    assert newest_first(parts) == [
        "predictions/scored_date=2026-03-01/a-00000.parquet",
        "predictions/scored_date=2026-03-01/a-00001.parquet",
        "predictions/scored_date=2026-01-02/b-00000.parquet",
    ]


def _part(path, texts, flags):
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {"id": [str(i) for i in range(len(texts))], "comentario": texts, "needs_review": flags},
        schema=pa.schema([("id", pa.string()), ("comentario", pa.string()), ("needs_review", pa.bool_())]),
    )
    pq.write_table(table, path)


class TestLoadingFromStorage:
    """The task the flow calls, on a local storage root with a ``predictions/`` table."""

    @staticmethod
    def load(root, max_rows, known=()):
        from prefect import flow

        from tasks.store.storage import Storage
        from tasks.training.scored_texts import load_scored_texts

        @flow(name="load-scored-texts-test")
        def run():
            return load_scored_texts(
                Storage(str(root)), max_rows, [pd.DataFrame({"comentario": list(known)})]
            )

        return run()

    @pytest.fixture
    def root(self, tmp_path):
        table = tmp_path / "store" / "predictions"
        _part(
            table / "scored_date=2026-12-01" / "k1-00000.parquet", ["viejo uno", "viejo dos"], [False, False]
        )
        _part(
            table / "scored_date=2026-12-05" / "k2-00000.parquet",
            ["nuevo", "dudoso", None],
            [False, True, None],
        )
        (table / "scored_date=2026-12-03").mkdir()
        (table / "scored_date=2026-12-03" / "k3-00000.parquet").write_bytes(b"not parquet")
        return tmp_path / "store"

    def test_reads_every_part_newest_first_and_skips_an_unreadable_one(self, prefect_harness, root):
        loaded = self.load(root, 100)
        assert loaded.texts == ["nuevo", "viejo uno", "viejo dos"]
        summary = loaded.summary()
        assert (summary["files_read"], summary["files_skipped"], summary["flagged_left_out"]) == (2, 1, 1)

    def test_the_bound_keeps_the_newest(self, prefect_harness, root):
        assert self.load(root, 2).texts == ["nuevo", "viejo uno"]

    def test_known_texts_are_left_out(self, prefect_harness, root):
        loaded = self.load(root, 100, known=["Viejo uno"])
        assert loaded.texts == ["nuevo", "viejo dos"] and loaded.known_left_out == 1

    def test_zero_reads_nothing(self, prefect_harness, root):
        loaded = self.load(root, 0)
        assert loaded.texts == [] and loaded.summary()["files_read"] == 0

    def test_no_predictions_yet_is_no_error(self, prefect_harness, tmp_path):
        assert self.load(tmp_path / "empty", 100).texts == []


class TestLearningFromThem:
    """``fit_classifier(unlabelled=...)``: the subword LSTM learns the bag models' reading of them."""

    @staticmethod
    def fit(token_input, unlabelled, **training):
        from lstm_model.fit import fit_classifier
        from lstm_model.results import LabelledTexts
        from lstm_model.settings import ArchitectureSettings
        from lstm_model.settings import TrainingSettings

        frame = comment_rows(16)
        texts, labels = frame["comentario"].tolist(), frame["categoria"].tolist()
        return fit_classifier(
            LabelledTexts(texts[:12], labels[:12]),
            LabelledTexts(texts[12:], labels[12:]),
            sorted(set(labels)),
            architecture=ArchitectureSettings(
                embedding_dim=8, hidden_size=8, head_sizes=(8,), token_input=token_input
            ),  # fmt: skip
            training=TrainingSettings(epochs=1, batch_size=4, device="cpu", **training),
            unlabelled=unlabelled,
        )

    UNLABELLED = ["el courier dejó el paquete en otra dirección", "me cobraron doble la tarifa"]

    def test_they_are_training_rows_and_their_ngrams_enter_the_vocabulary(self):
        without = self.fit("subwords", None)
        fitted = self.fit("subwords", self.UNLABELLED)
        assert fitted.report.unlabelled_rows == 2 and without.report.unlabelled_rows == 0
        assert "couri" in fitted.subwords.ngrams.itos and "couri" not in without.subwords.ngrams.itos
        assert fitted.report.to_dict()["unlabelled_rows"] == 2

    def test_a_stems_lstm_does_not_use_them(self):
        assert self.fit("stems", self.UNLABELLED).report.unlabelled_rows == 0

    def test_their_targets_are_the_bag_models_probabilities(self, monkeypatch):
        import lstm_model.fit as fit_module

        seen = {}
        real = fit_module.train_classifier

        def spy(*args, **kwargs):
            if kwargs.get("train_targets") is not None:  # the LSTM's training, not a bag model's
                seen["targets"], seen["weights"] = kwargs["train_targets"], kwargs["train_weights"]
            return real(*args, **kwargs)

        monkeypatch.setattr(fit_module, "train_classifier", spy)
        fitted = self.fit("subwords", self.UNLABELLED, self_train_weight=0.5)
        taught = seen["targets"][-2:]
        assert taught.shape == (2, 4) and abs(taught.sum(axis=1) - 1).max() < 1e-5
        assert (taught.max(axis=1) < 1).all()  # soft: the teacher's probabilities, not a one-hot label
        assert list(seen["weights"][-2:]) == [0.5, 0.5] and seen["weights"][0] == 1.0
        assert fitted.report.settings.self_train_weight == 0.5
