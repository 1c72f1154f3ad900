"""Character n-grams: which n-grams a word gives, the vocabulary, and texts expanded batch by batch."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from lstm_model.char_ngrams import CharNgramSpec
from lstm_model.char_ngrams import NgramVocabulary
from lstm_model.token_form import strip_accents
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.vocab import PAD_ID
from lstm_model.vocab import UNK_ID

TEXTS = [
    "El envío llegó tarde",
    "envio tarde otra vez, ENVÍO!!",
    "",
    None,
    "precio carísimo",
    "qqq",
]


def tokens(texts):
    return tokenize_arrow(pa.array(texts, pa.string()))


class TestSpec:
    def test_grams_of_a_word_are_accent_free_and_marked_at_the_edges(self):
        assert CharNgramSpec(min_n=2, max_n=3).grams("día") == [" d", "di", "ia", "a ", " di", "dia", "ia "]

    def test_one_letter_word_still_gives_its_edges(self):
        assert CharNgramSpec(min_n=2, max_n=5).grams("y") == [" y", "y ", " y "]

    def test_a_long_word_gives_the_ngrams_of_its_first_characters_only(self):
        spec = CharNgramSpec(min_n=2, max_n=5, max_word_chars=30)
        long_word = "ja" * 2500
        assert spec.grams(long_word) == spec.grams(long_word[:30])
        assert len(spec.grams(long_word)) < 4 * 32

    def test_words_strips_accents_in_arrow_exactly_as_python_does(self, monkeypatch):
        """Every character up to U+024F alone, and beside ñ, with the Python path switched off."""
        import lstm_model.char_ngrams as module

        spec = CharNgramSpec()
        latin = [chr(c) for c in range(1, 0x250)]
        words = [*latin, *(f"{c}ñ{c}" for c in latin), "ÑANDÚ", "pingüino", "ñ", "", "á" * 40]
        expected = [strip_accents(w[: spec.max_word_chars]) for w in words]
        with monkeypatch.context() as patch:
            patch.setattr(module, "strip_accents", None)  # any call would fail
            assert spec.words(pa.array(words, pa.string())).to_pylist() == expected

    def test_words_beyond_latin_letters_go_through_python(self):
        spec = CharNgramSpec()
        words = ["e\u0301nvío", "한국어", "ǅemo", "😀á", "ἀθήνα", "día\ue000", "a\0ñ", "plain"]
        expected = [strip_accents(w) for w in words]
        assert spec.words(pa.array(words, pa.string())).to_pylist() == expected

    def test_bad_lengths_are_refused(self):
        with pytest.raises(ValueError, match="min_n <= max_n"):
            CharNgramSpec(min_n=4, max_n=3)


class TestVocabulary:
    def test_counts_every_occurrence_most_frequent_first(self):
        spec = CharNgramSpec(min_n=2, max_n=3)
        vocab = NgramVocabulary.build(tokens(TEXTS), spec=spec)
        naive = Counter(g for row in tokens(TEXTS).to_pylist() if row for t in row for g in spec.grams(t))
        assert vocab.itos[:2] == ("[PAD]", "[UNK]")
        assert set(vocab.itos[2:]) == set(naive)
        ranks = [(-naive[g], g) for g in vocab.itos[2:]]
        assert ranks == sorted(ranks)  # by count, ties alphabetical: the same data gives the same ids

    def test_min_freq_and_max_size(self):
        assert "env" in NgramVocabulary.build(tokens(TEXTS), min_freq=3).itos  # envío, envio, ENVÍO
        assert "lleg" not in NgramVocabulary.build(tokens(TEXTS), min_freq=2).itos  # once only
        assert len(NgramVocabulary.build(tokens(TEXTS), max_size=5)) == 5

    def test_round_trip_and_refusals(self):
        vocab = NgramVocabulary.build(tokens(TEXTS), spec=CharNgramSpec(min_n=3, max_n=4))
        again = NgramVocabulary.from_dict(__import__("json").loads(vocab.to_json()))
        assert again == vocab and again.spec == CharNgramSpec(min_n=3, max_n=4)
        with pytest.raises(ValueError, match="must start with"):
            NgramVocabulary(("a", "b"))
        with pytest.raises(ValueError, match="repeat"):
            NgramVocabulary(("[PAD]", "[UNK]", "ab", "ab"))


class TestEncoding:
    """``encode`` + ``pad`` must give, row by row, the known n-grams of the row's first tokens."""

    @pytest.fixture
    def vocab(self):
        return NgramVocabulary.build(tokens(["el envío llegó", "precio caro"]))

    def expected(self, vocab, texts, max_tokens):
        index = {g: i for i, g in enumerate(vocab.itos)}
        out = []
        for row in tokens(texts).to_pylist():
            ids = [index[g] for t in (row or [])[:max_tokens] for g in vocab.spec.grams(t) if g in index]
            out.append(ids or [UNK_ID])
        return out

    @pytest.mark.parametrize("max_tokens", [1, 2, 64])
    def test_padded_rows_hold_each_rows_known_ngrams_in_order(self, vocab, max_tokens):
        encoded = vocab.encode(tokens(TEXTS), max_tokens)
        expected = self.expected(vocab, TEXTS, max_tokens)
        assert len(encoded) == len(TEXTS)
        assert encoded.lengths.tolist() == [len(ids) for ids in expected]
        rows = np.array([4, 0, 2, 1, 5, 3])
        ids, lengths = encoded.pad(rows)
        assert ids.shape == (len(rows), max(len(expected[r]) for r in rows))
        for line, r in zip(ids.numpy(), rows, strict=True):
            assert line[: len(expected[r])].tolist() == expected[r]
            assert (line[len(expected[r]) :] == PAD_ID).all()
        assert lengths.tolist() == [len(expected[r]) for r in rows]

    def test_take_keeps_rows_and_their_ngrams(self, vocab):
        encoded = vocab.encode(tokens(TEXTS), 64)
        picked = encoded.take(np.array([1, 4]))
        assert len(picked) == 2
        assert picked.pad(np.array([0, 1]))[0].tolist() == encoded.pad(np.array([1, 4]))[0].tolist()

    def test_sliced_and_chunked_arrays(self, vocab):
        whole = tokens(TEXTS)
        sliced = vocab.encode(whole.slice(1, 4), 64)
        chunked = vocab.encode(pa.chunked_array([whole.slice(1, 2), whole.slice(3, 2)]), 64)
        expected = self.expected(vocab, TEXTS[1:5], 64)
        for encoded in (sliced, chunked):
            ids, _ = encoded.pad(np.arange(4))
            assert [
                line[: len(e)].tolist() for line, e in zip(ids.numpy(), expected, strict=True)
            ] == expected

    def test_empty_input(self, vocab):
        encoded = vocab.encode(tokens([]), 64)
        assert len(encoded) == 0 and encoded.lengths.tolist() == []


class TestPackedLookup:
    """The packed (numpy) lookup must give exactly what looking each n-gram up in Python gives."""

    LETTERS = "abcdeilmnoprstuvzáéíóúñü"

    def random_words(self, rng, count, extra=""):
        chars = self.LETTERS + extra
        return ["".join(rng.choice(list(chars), size=rng.integers(1, 14))) for _ in range(count)]

    def python_lookup(self, vocab, words):
        return [vocab.keys.known_ids(vocab.spec.grams(w)) for w in words]

    def packed_lookup(self, vocab, words):
        ids, counts = vocab._gram_ids(pa.array(words, pa.string()))
        ends = np.cumsum(counts)
        return [ids[end - n : end].tolist() for end, n in zip(ends, counts, strict=True)]

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_random_words_with_foreign_characters(self, seed, monkeypatch):
        rng = np.random.default_rng(seed)
        vocab = NgramVocabulary.build(pa.array([self.random_words(rng, 300)], pa.list_(pa.string())))
        assert vocab.packed.fits
        words = self.random_words(rng, 2000, extra="ÁÑxyzq9😀한ǅ\u0301")
        words += [
            "",
            "a",
            "ñ",
            "x" * 5000,
            "á" * 40,
            "한국어",
            "ǅemo",
            "e\u0301nvio",
            "😀😀",
            "a b",
        ]
        expected = self.python_lookup(vocab, words)
        with monkeypatch.context() as patch:  # the packed lookup, not the Python fallback
            patch.setattr(NgramVocabulary, "_gram_ids_in_python", None)
            assert self.packed_lookup(vocab, words) == expected
        with_nul = [*words[:50], "nul\0x"]  # never from the tokenizer: looked up in Python
        in_python = NgramVocabulary._gram_ids_in_python
        calls = []
        monkeypatch.setattr(
            NgramVocabulary, "_gram_ids_in_python", lambda v, d: calls.append(len(d)) or in_python(v, d)
        )
        assert self.packed_lookup(vocab, with_nul) == self.python_lookup(vocab, with_nul)
        assert calls == [len(with_nul)]

    def test_more_words_than_a_block(self, monkeypatch):
        from lstm_model.char_ngrams import PackedNgrams

        monkeypatch.setattr(PackedNgrams, "BLOCK", 7)
        rng = np.random.default_rng(3)
        vocab = NgramVocabulary.build(pa.array([self.random_words(rng, 100)], pa.list_(pa.string())))
        words = self.random_words(rng, 50)
        assert self.packed_lookup(vocab, words) == self.python_lookup(vocab, words)

    def test_an_alphabet_too_large_to_pack_falls_back_to_python(self):
        rng = np.random.default_rng(4)
        spec = CharNgramSpec(min_n=2, max_n=13)  # 24 letters and the space: 5 bits each, 13 of them: 65
        vocab = NgramVocabulary.build(
            pa.array([self.random_words(rng, 200)], pa.list_(pa.string())), spec=spec
        )
        assert not vocab.packed.fits
        words = self.random_words(rng, 100, extra="xyz")
        assert self.packed_lookup(vocab, words) == self.python_lookup(vocab, words)

    def test_a_block_of_words_too_short_for_the_smallest_ngram(self, monkeypatch):
        from lstm_model.char_ngrams import PackedNgrams

        spec = CharNgramSpec(min_n=4, max_n=5)  # " a " has no 4-gram
        vocab = NgramVocabulary.build(pa.array([["hola", "envio", "sol"]], pa.list_(pa.string())), spec=spec)
        monkeypatch.setattr(PackedNgrams, "BLOCK", 2)  # the last block, ["a"], is all short words
        for words in (["a", "b"], ["hola", "envio", "a"], ["", "hola"]):
            assert self.packed_lookup(vocab, words) == self.python_lookup(vocab, words)

    def test_a_vocabulary_without_ngrams(self):
        vocab = NgramVocabulary(("[PAD]", "[UNK]"))
        assert self.packed_lookup(vocab, ["hola", ""]) == [[], []]
