"""The LSTM, the training loop, metrics, the split and template-token detection, on tiny inputs."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
import torch
from prefect.logging import disable_run_logger

from helpers import comment_rows
from lstm_model.batching import EncodedTexts
from lstm_model.batching import encode_tokens
from lstm_model.batching import pad_rows
from lstm_model.evaluation import Metrics
from lstm_model.evaluation import evaluate
from lstm_model.frames import find_frame_tokens
from lstm_model.frames import frame_id_mask
from lstm_model.frames import mask_tokens
from lstm_model.model import LSTMClassifier
from lstm_model.model import ModelConfig
from lstm_model.settings import ArchitectureSettings
from lstm_model.settings import ReviewSettings
from lstm_model.settings import SecondModelSettings
from lstm_model.settings import TextSettings
from lstm_model.settings import TrainingSettings
from lstm_model.splits import stratified_split
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import predict_logits
from lstm_model.training import resolve_device
from lstm_model.training import train_classifier
from lstm_model.vocab import PAD_ID
from lstm_model.vocab import UNK_ID
from lstm_model.vocab import Vocabulary

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {
    "embedding_dim": 8,
    "hidden_size": 8,
    "num_layers": 1,
    "lstm_dropout": 0.0,
    "head_sizes": (8,),
    "head_dropout": 0.0,
    "token_input": "stems",  # the id-level tests below; TestSubwordModel reads subwords
}


def tiny_model(vocab_size: int = 10, num_classes: int = 3, seed: int = 0, **overrides) -> LSTMClassifier:
    torch.manual_seed(seed)
    return LSTMClassifier(
        ModelConfig(vocab_size=vocab_size, num_classes=num_classes, **{**TINY, **overrides})
    )


# -------------------------------------------------------------------------------------------------- model


class TestModelOutputShape:
    def test_one_logit_per_class_per_row(self):
        model = tiny_model(num_classes=3).eval()
        ids = torch.tensor([[2, 3, 4], [5, 0, 0]])
        out = model(ids, torch.tensor([3, 1]))
        assert out.shape == (2, 3)
        assert out.dtype == torch.float32

    def test_default_sizes_are_the_notebook_sizes(self):
        config = ModelConfig(vocab_size=50, num_classes=4)
        model = LSTMClassifier(config)
        assert model.lstm.num_layers == 2 and model.lstm.hidden_size == 128
        assert config.token_input == "subwords"
        assert model.subwords.embedding_dim == 256 and model.subwords.mode == "mean"
        stems = LSTMClassifier(ModelConfig(vocab_size=50, num_classes=4, token_input="stems"))
        assert stems.embedding.embedding_dim == 256
        assert stems.embedding.padding_idx == PAD_ID
        assert stems(torch.tensor([[2, 3]]), torch.tensor([2])).shape == (1, 4)

    def test_an_unknown_token_input_is_a_clear_error(self):
        with pytest.raises(ValueError, match="token_input must be one of stems, subwords"):
            LSTMClassifier(ModelConfig(vocab_size=5, num_classes=2, token_input="letters"))

    def test_bundles_before_subwords_read_stems(self):
        old = ModelConfig(vocab_size=7, num_classes=2, token_input="stems").to_dict()
        del old["token_input"]
        assert ModelConfig.from_dict(old).token_input == "stems"

    def test_config_dict_round_trip(self):
        config = ModelConfig(vocab_size=7, num_classes=2, head_sizes=(4, 3))
        assert ModelConfig.from_dict(config.to_dict()) == config


class TestModelIgnoresRightPadding:
    def test_extra_pad_tokens_do_not_change_logits(self):
        model = tiny_model(num_layers=2, lstm_dropout=0.2, head_dropout=0.2).eval()
        row = [2, 7, 3, 9]
        short = model(torch.tensor([row]), torch.tensor([4]))
        padded = model(torch.tensor([row + [PAD_ID] * 20]), torch.tensor([4]))
        assert torch.allclose(short, padded, atol=1e-6)

    def test_row_gives_same_logits_alone_and_next_to_a_longer_row(self):
        model = tiny_model().eval()
        alone = model(torch.tensor([[4, 5]]), torch.tensor([2]))
        batch = model(torch.tensor([[4, 5, PAD_ID, PAD_ID, PAD_ID], [2, 3, 4, 5, 6]]), torch.tensor([2, 5]))
        assert torch.allclose(alone[0], batch[0], atol=1e-6)

    def test_logits_do_depend_on_the_real_tokens(self):
        # Guards the two tests above against a model that ignores its input altogether.
        model = tiny_model().eval()
        a = model(torch.tensor([[2, 3, 4]]), torch.tensor([3]))
        b = model(torch.tensor([[2, 3, 5]]), torch.tensor([3]))
        assert not torch.allclose(a, b)


class TestSubwordModel:
    """The subword LSTM: each word the mean of its character n-grams' vectors, read in order."""

    @staticmethod
    def _setup(texts, **overrides):
        from lstm_model.char_ngrams import CharNgramSpec
        from lstm_model.subwords import SubwordVocabulary
        from lstm_model.token_form import TokenForm

        tokens = tokenize_arrow(pa.array(texts))
        vocab = SubwordVocabulary.build(
            tokens, form=TokenForm(), spec=CharNgramSpec(min_n=3, max_n=5), max_size=None
        )
        model = tiny_model(vocab_size=len(vocab), num_classes=3, **{"token_input": "subwords", **overrides})
        return vocab, model.eval()

    def test_a_row_scores_the_same_alone_and_beside_a_longer_one(self):
        vocab, model = self._setup(
            ["el paquete no llega", "la página no carga nunca jamás hoy"], num_layers=2
        )
        alone = vocab.encode(tokenize_arrow(pa.array(["el paquete no llega"])), 16)
        both = vocab.encode(
            tokenize_arrow(pa.array(["el paquete no llega", "la página no carga nunca jamás hoy"])), 16
        )
        with torch.no_grad():
            a = model(*alone.pad(np.array([0])))
            b = model(*both.pad(np.array([0, 1])))
        assert torch.allclose(a[0], b[0], atol=1e-6)

    def test_a_word_reads_the_mean_of_its_ngram_vectors(self):
        vocab, model = self._setup(["paquete"])
        batch, _ = vocab.encode(tokenize_arrow(pa.array(["paquete"])), 16).pad(np.array([0]))
        index = {g: i for i, g in enumerate(vocab.ngrams.itos)}
        ids = [index[g] for g in vocab.ngrams.spec.grams("paquete")]
        with torch.no_grad():
            words = model.embed_subwords(batch)
        assert torch.allclose(words[0, 0], model.subwords.weight[ids].mean(0), atol=1e-6)

    def test_a_typo_shares_most_of_the_word_vector(self):
        """ "paqute" keeps most of "paquete"'s n-grams, where a stem vocabulary gives [UNK]."""
        vocab, model = self._setup(["paquete llega tarde"])
        encoded = vocab.encode(tokenize_arrow(pa.array(["paquete", "paqute", "tarde"])), 16)
        with torch.no_grad():
            words = model.embed_subwords(encoded.pad(np.array([0, 1, 2]))[0])[:, 0]
        similarity = torch.nn.functional.cosine_similarity
        assert similarity(words[0], words[1], dim=0) > similarity(words[0], words[2], dim=0)

    def test_a_masked_word_and_an_empty_row_read_the_unknown_vector(self):
        vocab, model = self._setup(["paquete llega"])
        batch, lengths = vocab.encode(tokenize_arrow(pa.array(["", "paquete"])), 16).pad(np.array([0, 1]))
        assert lengths.tolist() == [1, 1]
        masked = batch.masked(lengths, frame_prob=0.0, token_prob=1.0, rng=np.random.default_rng(0))
        with torch.no_grad():
            empty, masked_word = model.embed_subwords(batch)[0, 0], model.embed_subwords(masked)[1, 0]
        assert torch.equal(empty, model.unknown) and torch.equal(masked_word, model.unknown)


# ------------------------------------------------------------------------------------------------ device


class TestResolveDevice:
    @pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has CUDA; the error path needs one without"
    )
    def test_cuda_without_gpu_is_a_clear_error(self):
        with pytest.raises(RuntimeError, match="'cuda' was requested but torch sees no CUDA GPU") as info:
            resolve_device("cuda")
        assert "auto or cpu" in str(info.value)
        assert "\n" not in str(info.value)

    @pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; auto would pick it")
    def test_auto_falls_back_to_cpu(self):
        assert resolve_device("auto") == torch.device("cpu")

    def test_cpu(self):
        assert resolve_device("cpu") == torch.device("cpu")

    def test_unknown_name_is_rejected(self):
        with pytest.raises(ValueError, match="auto, cpu or cuda"):
            resolve_device("tpu")


# ---------------------------------------------------------------------------------------------- training

# Two classes told apart by one word; the other words are shared noise.
_WORDS = ("rojo", "azul", "x", "y", "z")
_VOCAB = Vocabulary(("[PAD]", "[UNK]", *_WORDS))


def separable(n_per_class: int, seed: int) -> tuple[EncodedTexts, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for label, key in enumerate(("rojo", "azul")):
        for _ in range(n_per_class):
            noise = rng.choice(["x", "y", "z"], size=rng.integers(1, 4)).tolist()
            where = rng.integers(0, len(noise) + 1)
            rows.append(noise[:where] + [key] + noise[where:])
            labels.append(label)
    return encode_tokens(pa.array(rows, pa.list_(pa.string())), _VOCAB, max_len=8), np.array(labels)


FAST = TrainingSettings(
    epochs=40,
    batch_size=8,
    learning_rate=0.02,
    weight_decay=0.0,
    patience=3,
    min_delta=1.0,
    seed=7,
    device="cpu",
    frame_mask_prob=0.0,
    token_mask_prob=0.0,
)


@pytest.fixture(scope="module")
def trained_separable():
    train, train_y = separable(24, seed=1)
    val, val_y = separable(8, seed=2)
    model = tiny_model(vocab_size=len(_VOCAB), num_classes=2)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    seen: list[int] = []

    def on_epoch(m):
        seen.append(m.epoch)
        snapshots[m.epoch] = copy.deepcopy(model.state_dict())

    result = train_classifier(model, train, train_y, val, val_y, FAST, on_epoch=on_epoch)
    return result, snapshots, seen, (val, val_y)


class TestTrainClassifierLearns:
    def test_reaches_perfect_validation_macro_f1(self, trained_separable):
        result, _, _, (val, val_y) = trained_separable
        assert max(h.val_macro_f1 for h in result.history) == 1.0
        predicted = predict_logits(result.model, val).argmax(axis=1)
        assert evaluate(val_y, predicted, ["rojo", "azul"]).macro_f1 == 1.0

    def test_on_epoch_is_called_for_every_epoch(self, trained_separable):
        result, _, seen, _ = trained_separable
        assert seen == [h.epoch for h in result.history] == list(range(1, len(result.history) + 1))

    def test_reports_cpu_fp32(self, trained_separable):
        result, *_ = trained_separable
        assert (result.device, result.precision) == ("cpu", "fp32")
        assert not result.model.training


class TestTrainClassifierRestoresBestEpoch:
    def test_stops_early_after_patience_epochs_without_improvement(self, trained_separable):
        result, *_ = trained_separable
        assert len(result.history) < FAST.epochs
        assert len(result.history) == result.best_epoch + FAST.patience

    def test_best_epoch_has_the_highest_validation_f1(self, trained_separable):
        result, *_ = trained_separable
        best = result.history[result.best_epoch - 1]
        assert best.val_macro_f1 == max(h.val_macro_f1 for h in result.history)

    def test_final_weights_are_the_best_epochs_not_the_last(self, trained_separable):
        result, snapshots, _, _ = trained_separable
        final = result.model.state_dict()
        last = snapshots[len(result.history)]
        best = snapshots[result.best_epoch]
        assert all(torch.equal(final[k], best[k]) for k in final)
        assert not all(torch.equal(final[k], last[k]) for k in final)


class TestTrainClassifierReproducible:
    def _train(self, seed: int) -> dict[str, torch.Tensor]:
        train, train_y = separable(12, seed=1)
        val, val_y = separable(4, seed=2)
        model = tiny_model(vocab_size=len(_VOCAB), num_classes=2, seed=0)
        config = TrainingSettings(**{**FAST.to_dict(), "epochs": 3, "seed": seed, "token_mask_prob": 0.2})
        train_classifier(model, train, train_y, val, val_y, config)
        return model.state_dict()

    def test_same_seed_gives_identical_weights(self):
        a, b = self._train(seed=11), self._train(seed=11)
        assert all(torch.equal(a[k], b[k]) for k in a)

    def test_different_seed_gives_different_weights(self):
        a, b = self._train(seed=11), self._train(seed=12)
        assert not all(torch.equal(a[k], b[k]) for k in a)


class TestTrainModelTaskReproducible:
    """``TrainConfig.seed`` is documented as the seed of "the weights" (CPU runs reproducible).

    So the task must seed torch before it builds the LSTM: otherwise the initial weights come from
    whatever state the global torch RNG is in, and two runs in one process differ.
    """

    def test_same_seed_gives_identical_weights_within_one_process(self):
        from tasks.training.modeling import train_model

        frame = comment_rows(16)
        splits = {"train": frame.iloc[:8], "val": frame.iloc[8:12], "test": frame.iloc[12:]}
        labels = tuple(sorted(frame["categoria"].unique()))
        config = TrainingSettings(epochs=1, batch_size=4, seed=5, device="cpu")
        with disable_run_logger():
            settings = (
                TextSettings(),
                ArchitectureSettings(**TINY),
                config,
                SecondModelSettings(),
                ReviewSettings(),
            )
            a = train_model.fn(splits, labels, *settings, calibration=frame.iloc[12:])
            torch.rand(3)  # any other use of torch's global generator in between
            b = train_model.fn(splits, labels, *settings, calibration=frame.iloc[12:])
        for model_a, model_b in ((a.model, b.model), (a.second_model, b.second_model)):
            sa, sb = model_a.state_dict(), model_b.state_dict()
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert a.review == b.review


class TestSecondModelChoice:
    """The default is both bag models (n-grams 0.65, stems 0.2), with or without labels; ``auto`` reads
    n-grams when analysts' labels are among the training rows, the LSTM's stems otherwise; unset fields
    take the chosen kind's defaults."""

    def test_resolution(self):
        for has_labels in (False, True):
            both = SecondModelSettings().resolved(has_labels=has_labels)
            assert (both.features, both.weight, both.stems_weight, both.learning_rate) == (
                "both",
                0.65,
                0.2,
                0.2,
            )
            stems = both.stems_part()
            assert (stems.features, stems.weight, stems.learning_rate, stems.epochs) == (
                "stems",
                0.2,
                0.05,
                30,
            )
        single = SecondModelSettings(features="char_ngrams").resolved(has_labels=False)
        assert (single.features, single.weight, single.stems_weight) == ("char_ngrams", 0.8, 0.0)
        auto = SecondModelSettings(features="auto")
        assert auto.resolved(has_labels=True).features == "char_ngrams"
        assert auto.resolved(has_labels=False).features == "stems"
        stems = SecondModelSettings(features="stems").resolved(has_labels=True)
        assert (stems.features, stems.weight, stems.learning_rate) == ("stems", 0.5, 0.05)
        ngrams = SecondModelSettings(weight=0.3).resolved(has_labels=True)
        assert (ngrams.weight, ngrams.epochs, ngrams.learning_rate) == (0.3, 50, 0.2)

    @pytest.mark.parametrize(
        ("analyst", "reads_ngrams"), [(None, False), ([False] * 12, False), ("some", True)]
    )
    def test_fit_classifier_picks_by_the_training_rows(self, analyst, reads_ngrams):
        from lstm_model.fit import fit_classifier
        from lstm_model.results import LabelledTexts

        frame = comment_rows(16)
        texts, labels = frame["comentario"].tolist(), frame["categoria"].tolist()
        if analyst == "some":
            analyst = [i % 4 == 0 for i in range(12)]
        fitted = fit_classifier(
            LabelledTexts(texts[:12], labels[:12], analyst),
            LabelledTexts(texts[12:], labels[12:]),
            sorted(set(labels)),
            architecture=ArchitectureSettings(**TINY),
            training=TrainingSettings(epochs=1, batch_size=4, device="cpu"),
            second=SecondModelSettings(features="auto"),
        )
        assert (fitted.ngrams is not None) == reads_ngrams
        assert fitted.second_model.weights.num_embeddings == len(fitted.ngrams or fitted.vocab)
        assert fitted.second_model_weight == (0.8 if reads_ngrams else 0.5)
        assert fitted.stems_model is None and fitted.stems_weight == 0.0

    def test_weights_over_one_are_refused(self):
        with pytest.raises(ValueError, match="exceed 1"):
            SecondModelSettings(weight=0.9).resolved(has_labels=False)  # + stems 0.2

    def test_both_trains_an_ngram_and_a_stems_model(self):
        from lstm_model.fit import fit_classifier
        from lstm_model.predict import Classifier
        from lstm_model.results import LabelledTexts

        frame = comment_rows(16)
        texts, labels = frame["comentario"].tolist(), frame["categoria"].tolist()
        fitted = fit_classifier(
            LabelledTexts(texts[:12], labels[:12]),
            LabelledTexts(texts[12:], labels[12:]),
            sorted(set(labels)),
            architecture=ArchitectureSettings(**TINY),
            training=TrainingSettings(epochs=1, batch_size=4, device="cpu"),
        )
        assert fitted.ngrams is not None and fitted.second_model.weights.num_embeddings == len(fitted.ngrams)
        assert fitted.stems_model.weights.num_embeddings == len(fitted.vocab)
        assert (fitted.second_model_weight, fitted.stems_weight) == (0.65, 0.2)
        # Scoring averages the three: the stems model's share moves the probabilities.
        with_stems = Classifier.from_fitted(fitted).predict_proba(texts)
        without = Classifier.from_fitted(replace(fitted, stems_model=None, stems_weight=0.0)).predict_proba(
            texts
        )
        assert not np.allclose(with_stems, without)


# ---------------------------------------------------------------------------------------------- metrics


class TestEvaluate:
    # true:  a a b b c        confusion (rows true, cols predicted)
    # pred:  a b b b a        a: [1 1 0]  b: [0 2 0]  c: [1 0 0]
    Y_TRUE = np.array([0, 0, 1, 1, 2])
    Y_PRED = np.array([0, 1, 1, 1, 0])

    def test_hand_computed_metrics(self):
        m = evaluate(self.Y_TRUE, self.Y_PRED, ["a", "b", "c"])
        assert m.confusion == ((1, 1, 0), (0, 2, 0), (1, 0, 0))
        assert m.accuracy == pytest.approx(3 / 5)
        got = {c.label: (c.precision, c.recall, c.f1, c.support) for c in m.per_class}
        assert got["a"] == pytest.approx((1 / 2, 1 / 2, 1 / 2, 2))
        assert got["b"] == pytest.approx((2 / 3, 1.0, 0.8, 2))
        assert got["c"] == pytest.approx((0.0, 0.0, 0.0, 1))  # never predicted: precision 0, not NaN
        assert m.macro_f1 == pytest.approx((0.5 + 0.8 + 0.0) / 3)

    def test_label_without_support_counts_in_macro_average(self):
        m = evaluate(np.array([0, 1]), np.array([0, 1]), ["a", "b", "c"])
        assert [c.f1 for c in m.per_class] == [1.0, 1.0, 0.0]
        assert m.macro_f1 == pytest.approx(2 / 3)
        assert m.accuracy == 1.0

    def test_perfect_predictions(self):
        m = evaluate(self.Y_TRUE, self.Y_TRUE, ["a", "b", "c"])
        assert m.accuracy == m.macro_f1 == 1.0
        assert m.confusion == ((2, 0, 0), (0, 2, 0), (0, 0, 1))

    def test_dict_round_trip(self):
        m = evaluate(self.Y_TRUE, self.Y_PRED, ["a", "b", "c"])
        assert Metrics.from_dict(m.to_dict()) == m

    def test_empty_input(self):
        m = evaluate(np.array([], int), np.array([], int), ["a"])
        assert m.accuracy == 0.0 and m.macro_f1 == 0.0


# ------------------------------------------------------------------------------------------------ splits

LABELS = ["a"] * 50 + ["b"] * 30 + ["c"] * 20


class TestStratifiedSplit:
    def test_same_seed_same_split(self):
        one = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=3)
        two = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=3)
        assert all(np.array_equal(one[k], two[k]) for k in ("train", "val", "test"))

    def test_different_seed_different_split(self):
        one = stratified_split(LABELS, seed=3)
        two = stratified_split(LABELS, seed=4)
        assert not np.array_equal(one["test"], two["test"])

    def test_parts_are_disjoint_and_cover_every_row(self):
        parts = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=3)
        sets = [set(parts[k].tolist()) for k in ("train", "val", "test")]
        assert sum(len(s) for s in sets) == len(LABELS)
        assert set.union(*sets) == set(range(len(LABELS)))

    def test_class_proportions_are_kept(self):
        parts = stratified_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=3)
        labels = np.array(LABELS)

        def counts(name):
            values, n = np.unique(labels[parts[name]], return_counts=True)
            return dict(zip(values.tolist(), n.tolist(), strict=True))

        assert counts("test") == {"a": 10, "b": 6, "c": 4}
        assert counts("val") == {"a": 5, "b": 3, "c": 2}
        assert counts("train") == {"a": 35, "b": 21, "c": 14}

    def test_small_class_appears_in_every_part(self):
        parts = stratified_split(["a"] * 20 + ["tiny"] * 3, seed=0)
        labels = np.array(["a"] * 20 + ["tiny"] * 3)
        assert all("tiny" in labels[parts[k]] for k in ("train", "val", "test"))

    @pytest.mark.parametrize("val, test", [(0.5, 0.5), (-0.1, 0.1), (0.1, 1.0)])
    def test_bad_fractions_are_rejected(self, val, test):
        with pytest.raises(ValueError, match="bad split fractions"):
            stratified_split(LABELS, val_fraction=val, test_fraction=test)


# ------------------------------------------------------------------------------------------------ frames


class TestFindFrameTokens:
    # Class "logistica": template "el pedido ... con ..."; topic words vary between texts.
    # Class "servicio": template "el agente ... caso"; topic words vary between texts.
    TEXTS = [
        ["el", "pedido", "llegó", "roto", "con", "ups"],
        ["el", "pedido", "se", "perdió", "con", "dhl"],
        ["el", "pedido", "llegó", "tarde", "con", "ups"],
        ["el", "pedido", "no", "apareció", "con", "fedex"],
        ["el", "pedido", "vino", "abierto", "con", "dhl"],
        ["el", "agente", "no", "respondió", "caso"],
        ["el", "agente", "fue", "grosero", "caso"],
        ["el", "agente", "no", "contestó", "caso"],
        ["el", "agente", "colgó", "rápido", "caso"],
        ["el", "agente", "tardó", "mucho", "caso"],
    ]
    LABELS = ["logistica"] * 5 + ["servicio"] * 5

    def test_template_words_are_found_and_topic_words_are_not(self):
        frame = find_frame_tokens(self.TEXTS, self.LABELS, min_class_coverage=0.8)
        assert frame == ["agente", "caso", "con", "el", "pedido"]
        for topic in ("llegó", "ups", "dhl", "no", "roto", "respondió"):
            assert topic not in frame

    def test_lower_coverage_lets_frequent_topic_words_in(self):
        # "llegó" is in 2 of 5 logistica texts, "no" in 2 of 5 servicio texts
        frame = find_frame_tokens(self.TEXTS, self.LABELS, min_class_coverage=0.4)
        assert {"llegó", "no", "ups", "dhl"} <= set(frame)

    def test_token_repeated_within_one_text_counts_once(self):
        assert find_frame_tokens([["a", "a", "a"], ["b"]], ["x", "x"], min_class_coverage=0.8) == []

    def test_arrow_counting_matches_counting_in_python_on_the_shared_dataset(self, shared_dataset):
        """The Arrow/numpy counts (no Python string per token) against a plain per-text loop, and the
        vocabulary counted by Arrow against collections.Counter, on the real texts with a stemmed form."""
        from collections import Counter

        from lstm_model.token_form import TokenForm
        from lstm_model.tokenizer import tokenize_arrow
        from lstm_model.vocab import ranked_keys

        tokens = tokenize_arrow(pa.array(shared_dataset["comentario"].tolist(), pa.string()))
        labels = shared_dataset["categoria"].tolist()
        form = TokenForm(stem=True, drop_stopwords=True)
        keys = form.keys_arrow(tokens)
        for coverage in (0.3, 0.8):
            docs: Counter[str] = Counter(labels)
            seen: dict[str, Counter[str]] = {}
            for row, label in zip(keys.to_pylist(), labels, strict=True):
                seen.setdefault(label, Counter()).update(set(row))
            expected = sorted(
                {t for c, counts in seen.items() for t, n in counts.items() if n >= coverage * docs[c]}
            )
            assert find_frame_tokens(keys, pa.array(labels), min_class_coverage=coverage) == expected
            assert find_frame_tokens(keys, labels, min_class_coverage=coverage, chunk_rows=7) == expected
            assert find_frame_tokens(keys.to_pylist(), labels, min_class_coverage=coverage) == expected
        counted = Counter(k for row in keys.to_pylist() for k in row)
        for min_freq, max_size in ((1, None), (3, 50)):
            vocab = Vocabulary.build(tokens, form=form, min_freq=min_freq, max_size=max_size)
            assert vocab.itos == ranked_keys(counted, min_freq=min_freq, max_size=max_size)
            assert (
                Vocabulary.build(tokens.to_pylist(), form=form, min_freq=min_freq, max_size=max_size) == vocab
            )


class TestFrameMasking:
    def test_frame_id_mask_marks_known_frame_tokens_only(self):
        vocab = Vocabulary.build([["el", "pedido", "roto"]])
        mask = frame_id_mask(vocab, ["el", "pedido", "ausente"])
        assert mask.tolist() == [
            vocab.id_of(t) in (vocab.id_of("el"), vocab.id_of("pedido")) for t in vocab.itos
        ]

    def test_mask_tokens_never_touches_padding(self):
        ids, _ = pad_rows(
            encode_tokens(pa.array([["a", "b"], ["a"]]), Vocabulary.build([["a", "b"]]), 5), np.arange(2)
        )
        ids = ids.numpy()
        real = np.array([[True, True], [True, False]])
        out = mask_tokens(ids, real, None, frame_prob=0.0, token_prob=1.0, rng=np.random.default_rng(0))
        assert out.tolist() == [[UNK_ID, UNK_ID], [UNK_ID, PAD_ID]]
