"""The domain phrases: how they are read, how many times they join the training texts, and what
they must not change (the template words, the validation rows)."""

from __future__ import annotations

import json

import pytest

from lstm_model.fit import phrase_copies
from tasks.common.validation import DatasetError
from tasks.training.phrases import read_phrases

CLASSES = ("ecommerce", "logistica", "precios", "servicio_cliente")


def _jsonl(rows: list[dict]) -> bytes:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()


class TestCopies:
    def test_enough_copies_for_the_share(self):
        # 531,200 source rows, 319 phrases, 10%: 59,022 phrase rows wanted -> 185 copies
        assert phrase_copies(531_200, 319, 0.1) == 185

    def test_every_phrase_at_least_once_on_a_small_source(self):
        assert phrase_copies(40, 319, 0.1) == 1

    def test_none_without_phrases_or_share(self):
        assert phrase_copies(1_000, 0, 0.1) == 0
        assert phrase_copies(1_000, 50, 0.0) == 0


class TestReading:
    def test_builtin_phrases_cover_every_class(self):
        from phrase_helpers import builtin_phrases

        phrases = builtin_phrases(CLASSES)
        counts = {c: phrases.labels.count(c) for c in CLASSES}
        assert min(counts.values()) >= 70, counts
        assert len(set(phrases.texts)) == len(phrases.texts)  # no phrase given twice

    def test_rows_of_other_classes_and_blank_texts_are_left_out_and_counted(self):
        data = _jsonl(
            [
                {"comentario": "me cobraron de más", "categoria": "precios"},
                {"comentario": "  ", "categoria": "precios"},
                {"comentario": None, "categoria": "logistica"},
                {"comentario": "el bot no entiende", "categoria": "otra_clase"},
                {"comentario": " el courier no vino ", "categoria": "logistica"},
            ]
        )
        phrases, left_out = read_phrases(data, "mine.jsonl", CLASSES)
        assert list(phrases.texts) == ["me cobraron de más", "el courier no vino"]
        assert list(phrases.labels) == ["precios", "logistica"]
        assert left_out == 3

    def test_a_file_without_the_columns_says_which_are_missing(self):
        with pytest.raises(DatasetError, match="categoria missing"):
            read_phrases(_jsonl([{"comentario": "hola", "clase": "precios"}]), "mine.jsonl", CLASSES)

    def test_a_json_array_is_read_too(self):
        data = json.dumps([{"comentario": "precio alto", "categoria": "precios"}]).encode()
        assert list(read_phrases(data, "mine.json", CLASSES)[0].texts) == ["precio alto"]


class TestTraining:
    @pytest.fixture(scope="class")
    @classmethod
    def fitted_pair(cls, shared_dataset):
        """The same small training with and without the phrases (two epochs: only the plumbing)."""
        from phrase_helpers import builtin_phrases

        from flows.configs import TrainConfig
        from lstm_model.fit import LabelledTexts
        from lstm_model.fit import fit_classifier

        cfg = TrainConfig(device="cpu", epochs=2)
        rows = shared_dataset.iloc[:600]
        train = LabelledTexts(rows["comentario"].tolist()[:500], rows["categoria"].tolist()[:500])
        val = LabelledTexts(rows["comentario"].tolist()[500:], rows["categoria"].tolist()[500:])
        settings = {
            "text": cfg.text_settings(),
            "architecture": cfg.architecture(),
            "training": cfg.training_settings(),
            "second": cfg.second_model_settings(),
        }
        return (
            fit_classifier(train, val, CLASSES, **settings),
            fit_classifier(train, val, CLASSES, phrases=builtin_phrases(CLASSES), **settings),
            builtin_phrases(CLASSES),
        )

    def test_the_template_words_are_found_in_the_source_only(self, fitted_pair):
        without, with_phrases, _ = fitted_pair
        assert with_phrases.frame_tokens == without.frame_tokens != ()

    def test_phrase_words_join_the_vocabulary_and_the_rows_are_counted(self, fitted_pair):
        without, with_phrases, phrases = fitted_pair
        from lstm_model.vocab import UNK_ID

        assert without.vocab.id_of("comisión") == UNK_ID  # no training row has it
        assert with_phrases.vocab.id_of("comisión") != UNK_ID
        assert len(with_phrases.vocab) > len(without.vocab) + 100
        assert with_phrases.report.phrase_rows == len(phrases.texts)  # 500 rows: each phrase once
        assert without.report.phrase_rows == 0

    def test_validation_rows_stay_the_sources(self, fitted_pair):
        without, with_phrases, _ = fitted_pair
        # early stopping and the validation figures read the same 100 rows either way
        assert len(with_phrases.report.history) == len(without.report.history)


class TestLoading:
    """The task the flow calls: builtin, none, or a file of the operator's."""

    @staticmethod
    def load(tmp_path, source: str):
        from prefect import flow

        from tasks.store.storage import Storage
        from tasks.training.phrases import load_domain_phrases

        @flow(name="load-phrases-test")
        def run():
            return load_domain_phrases(Storage(str(tmp_path / "store")), source, CLASSES)

        return run()

    def test_an_operators_file_replaces_the_builtin_ones(self, prefect_harness, tmp_path):
        mine = tmp_path / "mine.jsonl"
        mine.write_bytes(_jsonl([{"comentario": "el motoboy no vino", "categoria": "logistica"}]))
        loaded = self.load(tmp_path, str(mine))
        assert list(loaded.texts.texts) == ["el motoboy no vino"] and loaded.source == str(mine)
        assert loaded.summary()["phrases"] == 1

    def test_a_file_with_no_row_of_the_trained_classes_is_an_error(self, prefect_harness, tmp_path):
        mine = tmp_path / "mine.jsonl"
        mine.write_bytes(_jsonl([{"comentario": "hola", "categoria": "reclamos"}]))
        with pytest.raises(DatasetError, match="no row of the classes being trained"):
            self.load(tmp_path, str(mine))

    def test_none_adds_nothing(self, prefect_harness, tmp_path):
        loaded = self.load(tmp_path, "none")
        assert loaded.texts.texts == [] and loaded.summary()["sha256"] is None
