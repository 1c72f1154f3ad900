"""Model bundles as files: what is written, what loads back, and what is refused."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from helpers import LABELS
from helpers import tiny_bundle
from lstm_model.batching import encode_tokens
from lstm_model.bundle import BUNDLE_FILES
from lstm_model.bundle import META_FILE
from lstm_model.bundle import NGRAMS_FILE
from lstm_model.bundle import SECOND_WEIGHTS_FILE
from lstm_model.bundle import SPLITS_FILE
from lstm_model.bundle import STEMS_WEIGHTS_FILE
from lstm_model.bundle import SUBWORDS_FILE
from lstm_model.bundle import VOCAB_FILE
from lstm_model.bundle import WEIGHTS_FILE
from lstm_model.bundle import ModelBundle
from lstm_model.evaluation import evaluate
from lstm_model.predict import Classifier
from lstm_model.settings import TextSettings
from lstm_model.token_form import TokenForm
from lstm_model.tokenizer import tokenize_arrow

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROBE_TEXTS = [
    "El pedido de cámara llegó dañado",
    "no acepta mi tarjeta",
    "el precio subió",
    "",
    "palabras que el modelo nunca vio",
]


class _NotAWeight:
    """A pickled object that is not a tensor: loading it must need full unpickling."""

    def __reduce__(self):
        return (dict, ())


@pytest.fixture(scope="module")
def trained():
    """A small model trained for two epochs on a tiny labelled frame, and its bundle."""
    bundle, fitted = tiny_bundle(
        metrics={"test": evaluate(np.array([0, 1, 2, 3]), np.array([0, 1, 2, 2]), LABELS)},
        splits={"train": ["id-0", "id-1"], "val": ["id-2"], "test": ["id-3"]},
        frame_tokens=("el", "pedid"),
    )
    return fitted.model, bundle


class TestBundleRoundTrip:
    def test_to_files_writes_the_four_files_the_second_model_and_the_subwords(self, trained):
        _, bundle = trained
        files = bundle.to_files()
        assert set(BUNDLE_FILES) == {WEIGHTS_FILE, VOCAB_FILE, META_FILE, SPLITS_FILE}
        assert set(files) == {*BUNDLE_FILES, SECOND_WEIGHTS_FILE, NGRAMS_FILE, SUBWORDS_FILE}
        assert all(isinstance(v, bytes) and v for v in files.values())

    def test_loaded_bundle_predicts_exactly_the_same_probabilities(self, trained):
        model, bundle = trained
        loaded = ModelBundle.from_files(bundle.to_files())
        original = Classifier.from_bundle(bundle).predict_proba(PROBE_TEXTS)
        again = Classifier.from_bundle(loaded).predict_proba(PROBE_TEXTS)
        assert np.array_equal(original, again)
        # ... and those are the trained models' own probabilities, averaged; a text with no word
        # (PROBE_TEXTS[3] is "") gets no class: uniform probabilities. The second model's are worked
        # out by hand: the mean of the weight rows of each word's known character n-grams, plus the bias.
        encoded = encode_tokens(tokenize_arrow(pa.array(PROBE_TEXTS)), bundle.vocab, bundle.max_len)
        second, weight = bundle.build_second_model(), bundle.second_model_weight
        index = {gram: i for i, gram in enumerate(bundle.ngrams.itos)}

        def second_probs(text: str) -> np.ndarray:
            tokens = tokenize_arrow(pa.array([text]))[0].as_py()
            ids = [index[g] for t in tokens for g in bundle.ngrams.spec.grams(t) if g in index]
            logits = second.weights.weight[ids].mean(0) + second.bias if ids else second.bias
            return torch.softmax(logits, dim=0).numpy()

        model.eval()
        with torch.no_grad():
            direct = [
                (1 - weight) * _lstm_probs(model, bundle, encoded, i, text) + weight * second_probs(text)
                for i, text in enumerate(PROBE_TEXTS)
            ]
        direct[3] = np.full(len(bundle.labels), 1 / len(bundle.labels))
        np.testing.assert_allclose(again, np.stack(direct), rtol=0, atol=1e-6)
        assert np.allclose(again.sum(axis=1), 1.0)

    def test_metadata_survives(self, trained):
        _, bundle = trained
        loaded = ModelBundle.from_files(bundle.to_files())
        assert loaded.version == bundle.version
        assert loaded.model_config == bundle.model_config
        assert loaded.vocab == bundle.vocab and loaded.vocab.form == bundle.vocab.form
        assert loaded.labels == bundle.labels
        assert loaded.max_len == 16
        assert loaded.data_fingerprint == bundle.data_fingerprint
        assert loaded.metrics == bundle.metrics
        assert loaded.training == bundle.training
        assert loaded.splits == bundle.splits
        assert loaded.frame_tokens == ("el", "pedid")

    def test_state_dict_is_detached_copy(self, trained):
        model, bundle = trained
        key = next(iter(bundle.state_dict))
        assert bundle.state_dict[key] is not model.state_dict()[key]
        assert torch.equal(bundle.state_dict[key], model.state_dict()[key])


def _lstm_probs(model, bundle, encoded, i: int, text: str) -> np.ndarray:
    """The LSTM's probabilities for one text, its input built by hand: a subword LSTM reads each
    word as the mean of its known n-grams' vectors (zeros with none), a text without words one [UNK]."""
    if bundle.subwords is None:
        return torch.softmax(model(*_single(encoded, i)), dim=1)[0].numpy()
    index = {gram: i for i, gram in enumerate(bundle.subwords.ngrams.itos)}
    words = bundle.subwords.form.keys_arrow(tokenize_arrow(pa.array([text])))[0].as_py()
    vectors = []
    for word in words[: bundle.max_len]:
        ids = [index[g] for g in bundle.subwords.ngrams.spec.grams(word) if g in index]
        vectors.append(model.subwords.weight[ids].mean(0) if ids else torch.zeros(model.config.embedding_dim))
    inputs = torch.stack(vectors) if vectors else model.unknown[None, :]
    outputs, _ = model.lstm(inputs[None])
    logits = model.head(model.pool(outputs, torch.tensor([len(inputs)])))
    return torch.softmax(logits, dim=1)[0].numpy()


def _single(encoded, i):
    start, length = encoded.starts[i], encoded.lengths[i]
    ids = torch.from_numpy(encoded.ids[start : start + length].copy())[None, :]
    return ids, torch.tensor([length])


class TestBundleWeightsOnly:
    def test_weights_file_loads_with_weights_only(self, trained):
        _, bundle = trained
        state = torch.load(io.BytesIO(bundle.to_files()[WEIGHTS_FILE]), weights_only=True)
        assert set(state) == set(bundle.state_dict)
        assert all(isinstance(v, torch.Tensor) for v in state.values())

    def test_from_files_refuses_arbitrary_pickles(self, trained):
        _, bundle = trained
        files = bundle.to_files()
        payload = io.BytesIO()
        torch.save({"weight": _NotAWeight()}, payload)
        files[WEIGHTS_FILE] = payload.getvalue()
        with pytest.raises(pickle.UnpicklingError):
            ModelBundle.from_files(files)


class TestBundleIncomplete:
    @pytest.mark.parametrize("missing", BUNDLE_FILES)
    def test_any_missing_file_is_a_value_error(self, trained, missing):
        _, bundle = trained
        files = bundle.to_files()
        del files[missing]
        with pytest.raises(ValueError, match="incomplete") as info:
            ModelBundle.from_files(files)
        assert missing in str(info.value)

    def test_empty_mapping(self):
        with pytest.raises(ValueError, match="incomplete"):
            ModelBundle.from_files({})


class TestTextAndModelOptionsRoundTrip:
    """The tokenizer settings and the pooling are part of the bundle: scoring reads like training."""

    @pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
    def test_pooling_and_token_form_survive(self, pooling):
        form = {"stem": True, "drop_stopwords": True, "strip_accents": True, "prefix_chars": 6}
        bundle, _ = tiny_bundle(text=TextSettings(max_len=16, **form), pooling=pooling)
        loaded = ModelBundle.from_files(bundle.to_files())
        assert loaded.model_config.pooling == pooling
        assert loaded.vocab.form == TokenForm(**form)
        assert loaded.review == bundle.review and loaded.second_model_weight == bundle.second_model_weight
        np.testing.assert_array_equal(
            Classifier.from_bundle(loaded).predict_proba(PROBE_TEXTS),
            Classifier.from_bundle(bundle).predict_proba(PROBE_TEXTS),
        )


class TestOldBundles:
    """A bundle written before stems, pooling and the second model (tests/data/bundle_prefix5_last:
    trained by the code of commit 20c9fe5) loads as it was trained and scores exactly as it did."""

    FOLDER = Path(__file__).parent / "data" / "bundle_prefix5_last"

    def test_scores_as_it_was_trained(self):
        files = {p.name: p.read_bytes() for p in self.FOLDER.iterdir() if p.name != "expected.json"}
        bundle = ModelBundle.from_files(files)
        assert bundle.vocab.form == TokenForm(prefix_chars=5)
        assert bundle.model_config.pooling == "last"
        assert bundle.second_state_dict is None and bundle.review.min_confidence is None
        expected = json.loads((self.FOLDER / "expected.json").read_text())
        scores = Classifier.from_bundle(bundle).score(expected["texts"])
        readable = [i for i, text in enumerate(expected["texts"]) if text]
        np.testing.assert_allclose(
            scores.probs[readable], np.array(expected["probs"])[readable], rtol=0, atol=1e-6
        )
        # The one change: a text with no word ("") is given no class any more (uniform, flagged).
        assert np.allclose(scores.probs[expected["texts"].index("")], 0.25)
        # It never had a review threshold: only what it cannot read, or knows no word of, is flagged.
        reasons = dict(zip(expected["texts"], scores.review_reason.to_pylist(), strict=True))
        assert {text: r for text, r in reasons.items() if r} == {
            "": "no_readable_words",
            "zzz qqq": "no_known_words",
        }


class TestStemsSecondModelBundles:
    """A bundle whose second model reads stems (tests/data/bundle_stems_second: trained by the code of
    commit b433927, before character n-grams) loads and scores exactly as it did."""

    FOLDER = Path(__file__).parent / "data" / "bundle_stems_second"

    def test_scores_as_it_was_trained(self):
        files = {p.name: p.read_bytes() for p in self.FOLDER.iterdir() if p.name != "expected.json"}
        assert NGRAMS_FILE not in files
        bundle = ModelBundle.from_files(files)
        assert bundle.ngrams is None and bundle.second_state_dict is not None
        assert bundle.second_model_weight == 0.5
        expected = json.loads((self.FOLDER / "expected.json").read_text())
        scores = Classifier.from_bundle(bundle).score(expected["texts"])
        np.testing.assert_allclose(scores.probs, np.array(expected["probs"]), rtol=0, atol=1e-6)
        assert scores.review_reason.to_pylist() == expected["reasons"]
        assert "models_disagree" in ",".join(filter(None, expected["reasons"]))


class TestNgramSecondModelBundles:
    """A bundle with one second model reading n-grams (tests/data/bundle_ngrams_second: trained by
    ``tiny_bundle`` with the code of commit 8a76d08, before the stems model beside it) loads and scores
    exactly as it did."""

    FOLDER = Path(__file__).parent / "data" / "bundle_ngrams_second"

    def test_scores_as_it_was_trained(self):
        files = {p.name: p.read_bytes() for p in self.FOLDER.iterdir() if p.name != "expected.json"}
        assert STEMS_WEIGHTS_FILE not in files
        bundle = ModelBundle.from_files(files)
        assert bundle.ngrams is not None and bundle.stems_state_dict is None and bundle.stems_weight == 0.0
        assert bundle.second_model_weight == 0.8
        expected = json.loads((self.FOLDER / "expected.json").read_text())
        scores = Classifier.from_bundle(bundle).score(expected["texts"])
        np.testing.assert_allclose(scores.probs, np.array(expected["probs"]), rtol=0, atol=1e-6)
        assert scores.review_reason.to_pylist() == expected["reasons"]


class TestStemsLstmBundles:
    """A bundle whose LSTM reads whole stems, with both bag models beside it (tests/data/
    bundle_both_stems_lstm: trained by ``tiny_bundle(second_features="both")`` with the code of commit
    5e73b15, the default before subwords) loads and scores exactly as it did."""

    FOLDER = Path(__file__).parent / "data" / "bundle_both_stems_lstm"

    def test_scores_as_it_was_trained(self):
        files = {p.name: p.read_bytes() for p in self.FOLDER.iterdir() if p.name != "expected.json"}
        assert SUBWORDS_FILE not in files
        bundle = ModelBundle.from_files(files)
        assert bundle.model_config.token_input == "stems" and bundle.subwords is None
        assert bundle.ngrams is not None and bundle.stems_state_dict is not None
        expected = json.loads((self.FOLDER / "expected.json").read_text())
        scores = Classifier.from_bundle(bundle).score(expected["texts"])
        np.testing.assert_allclose(scores.probs, np.array(expected["probs"]), rtol=0, atol=1e-6)
        assert scores.review_reason.to_pylist() == expected["reasons"]

    def test_a_subwords_file_beside_a_stems_lstm_is_refused(self):
        files = {p.name: p.read_bytes() for p in self.FOLDER.iterdir() if p.name != "expected.json"}
        from lstm_model.char_ngrams import CharNgramSpec
        from lstm_model.subwords import SubwordVocabulary

        subwords = SubwordVocabulary.build(
            tokenize_arrow(pa.array(["hola mundo"])), form=TokenForm(), spec=CharNgramSpec(), max_size=None
        )
        files[SUBWORDS_FILE] = subwords.to_json().encode()
        with pytest.raises(ValueError, match="reads stems but the bundle has subwords.json"):
            ModelBundle.from_files(files)


@pytest.fixture(scope="module")
def both():
    """A tiny bundle trained with both bag models, and its fitted model."""
    return tiny_bundle(second_features="both")


class TestBothSecondModelsBundle:
    """A bundle with an n-gram model and a stems model beside the LSTM: the stems model's weights are one
    more file, and the probabilities are ``(1 - w - s) * LSTM + w * n-grams + s * stems``."""

    def test_round_trip_scores_the_three_models_averaged(self, both):
        bundle, fitted = both
        files = bundle.to_files()
        assert set(files) == {
            *BUNDLE_FILES,
            SECOND_WEIGHTS_FILE,
            NGRAMS_FILE,
            STEMS_WEIGHTS_FILE,
            SUBWORDS_FILE,
        }
        meta = json.loads(files[META_FILE])
        assert (meta["second_model_features"], meta["second_model_weight"], meta["stems_model_weight"]) == (
            "both",
            0.65,
            0.2,
        )
        loaded = ModelBundle.from_files(files)
        again = Classifier.from_bundle(loaded).predict_proba(PROBE_TEXTS)
        np.testing.assert_array_equal(again, Classifier.from_fitted(fitted).predict_proba(PROBE_TEXTS))
        # Each model alone, then averaged by hand.
        lstm = Classifier(
            loaded.build_model(), loaded.vocab, loaded.labels, loaded.max_len, subwords=loaded.subwords
        )
        ngrams = Classifier(
            loaded.build_model(), loaded.vocab, loaded.labels, loaded.max_len, subwords=loaded.subwords,
            second_model=loaded.build_second_model(), second_model_weight=1.0, ngrams=loaded.ngrams,
        )  # fmt: skip
        stems = Classifier(loaded.build_stems_model(), loaded.vocab, loaded.labels, loaded.max_len)
        by_hand = 0.15 * lstm.predict_proba(PROBE_TEXTS) + 0.65 * ngrams.predict_proba(PROBE_TEXTS)
        by_hand += 0.2 * stems.predict_proba(PROBE_TEXTS)
        readable = [i for i, text in enumerate(PROBE_TEXTS) if text]
        np.testing.assert_allclose(again[readable], by_hand[readable], rtol=0, atol=1e-6)

    def test_stems_model_without_ngrams_is_refused(self, both):
        files = both[0].to_files()
        del files[NGRAMS_FILE]
        with pytest.raises(ValueError, match=STEMS_WEIGHTS_FILE):
            ModelBundle.from_files(files)

    def test_stems_weights_that_do_not_fit_are_refused(self, both):
        files = both[0].to_files()
        files[STEMS_WEIGHTS_FILE] = files[SECOND_WEIGHTS_FILE]  # n-gram sized rows
        with pytest.raises(ValueError, match=STEMS_WEIGHTS_FILE):
            ModelBundle.from_files(files)

    def test_missing_stems_weight_in_meta_is_refused(self, both):
        files = both[0].to_files()
        meta = json.loads(files[META_FILE])
        del meta["stems_model_weight"]
        files[META_FILE] = json.dumps(meta).encode()
        with pytest.raises(ValueError, match="lacks a field"):
            ModelBundle.from_files(files)


class TestBundleConsistency:
    """Files that load but do not fit together are refused, naming the file at fault."""

    def _files_with_meta(self, bundle, **changes):
        files = bundle.to_files()
        meta = json.loads(files[META_FILE])
        meta.update(changes)
        files[META_FILE] = json.dumps(meta).encode()
        return files

    def _files_with_one_more_entry(self, bundle, name, entry):
        """The bundle's files with ``entry`` appended to the ``itos`` of the JSON file ``name``."""
        files = bundle.to_files()
        table = json.loads(files[name])
        table["itos"].append(entry)
        files[name] = json.dumps(table).encode()
        return files

    def test_fewer_labels_than_outputs(self, trained):
        _, bundle = trained
        files = self._files_with_meta(bundle, labels=list(bundle.labels[:3]))
        with pytest.raises(ValueError, match="bundle.json: 3 labels but the network has 4 outputs"):
            ModelBundle.from_files(files)

    def test_repeated_labels(self, trained):
        _, bundle = trained
        files = self._files_with_meta(bundle, labels=[*bundle.labels[:3], bundle.labels[0]])
        with pytest.raises(ValueError, match="labels repeat"):
            ModelBundle.from_files(files)

    def test_subwords_of_another_size(self, trained):
        _, bundle = trained
        files = self._files_with_one_more_entry(bundle, SUBWORDS_FILE, "nuevo")
        with pytest.raises(ValueError, match=r"subwords.json has \d+ entries but the network embeds \d+"):
            ModelBundle.from_files(files)

    def test_vocabulary_of_another_size(self):
        """An LSTM that reads stems embeds the vocabulary's entries."""
        folder = TestStemsLstmBundles.FOLDER
        files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "expected.json"}
        table = json.loads(files[VOCAB_FILE])
        table["itos"].append("nuevo")
        files[VOCAB_FILE] = json.dumps(table).encode()
        with pytest.raises(ValueError, match=r"vocab.json has \d+ entries but the network embeds \d+"):
            ModelBundle.from_files(files)

    def test_weights_of_another_network(self, trained):
        _, bundle = trained
        config = dict(json.loads(bundle.to_files()[META_FILE])["model_config"], hidden_size=16)
        files = self._files_with_meta(bundle, model_config=config)
        with pytest.raises(ValueError, match="weights.pt does not fit the network in bundle.json"):
            ModelBundle.from_files(files)

    def test_ngrams_of_another_size(self, trained):
        _, bundle = trained
        files = self._files_with_one_more_entry(bundle, NGRAMS_FILE, "zzz")
        with pytest.raises(ValueError, match="second_model.pt does not fit the n-grams and labels"):
            ModelBundle.from_files(files)

    def test_ngrams_without_a_second_model(self, trained):
        _, bundle = trained
        files = bundle.to_files()
        del files[SECOND_WEIGHTS_FILE]
        with pytest.raises(ValueError, match="has char_ngrams.json but no second_model.pt"):
            ModelBundle.from_files(files)

    def test_cut_json_names_the_file(self, trained):
        _, bundle = trained
        files = bundle.to_files()
        files[VOCAB_FILE] = files[VOCAB_FILE][: len(files[VOCAB_FILE]) // 2]
        with pytest.raises(ValueError, match="vocab.json is not valid JSON"):
            ModelBundle.from_files(files)
