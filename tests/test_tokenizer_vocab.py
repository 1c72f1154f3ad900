"""Tokenizer, vocabulary and variable-length batching: tiny inputs straight into the functions."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from lstm_model.batching import EncodedTexts
from lstm_model.batching import encode_tokens
from lstm_model.batching import length_sorted_batches
from lstm_model.batching import pad_rows
from lstm_model.token_form import TokenForm
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.vocab import PAD
from lstm_model.vocab import PAD_ID
from lstm_model.vocab import UNK
from lstm_model.vocab import UNK_ID
from lstm_model.vocab import Vocabulary


def _tokens(*rows: list[str] | None) -> pa.ListArray:
    return pa.array(list(rows), pa.list_(pa.string()))


def tokenize_many(texts: list[str | None]) -> list[list[str] | None]:
    return tokenize_arrow(pa.array(texts, pa.string())).to_pylist()


def tokenize(text: str) -> list[str]:
    return tokenize_many([text])[0]


def encode_texts(texts: list[str], vocab: Vocabulary, max_len: int) -> EncodedTexts:
    return encode_tokens(tokenize_arrow(pa.array(texts, pa.string())), vocab, max_len)


# --------------------------------------------------------------------------------------------- tokenizer


class TestNormalisation:
    def test_decomposed_accent_equals_composed(self):
        decomposed = "cancio\u0301n"  # "o" + COMBINING ACUTE ACCENT
        assert decomposed != "canción"
        assert tokenize(decomposed) == tokenize("canción") == ["canción"]

    def test_single_decomposed_letter(self):
        assert tokenize("a\u0301") == ["á"]

    def test_compatibility_characters_are_folded(self):
        # NFKC (not just NFC): the "fi" ligature becomes two letters, fullwidth digits become ASCII.
        assert tokenize("ﬁn") == ["fin"]
        assert tokenize("１０") == ["10"]


class TestLowercase:
    def test_upper_and_mixed_case_are_lowered(self):
        assert tokenize("HOLA Mundo ÁRBOL ÑANDÚ") == ["hola", "mundo", "árbol", "ñandú"]

    def test_same_word_in_different_case_is_one_token(self):
        assert tokenize("Pedido PEDIDO pedido") == ["pedido"] * 3


class TestSpanishLetters:
    @pytest.mark.parametrize("word", ["canción", "pingüino", "año", "está", "aquí", "menú", "qué"])
    def test_accented_word_stays_whole(self, word):
        assert tokenize(f"x {word} y") == ["x", word, "y"]

    def test_all_spanish_letters_kept(self):
        assert tokenize("á é í ó ú ü ñ") == ["á", "é", "í", "ó", "ú", "ü", "ñ"]


class TestPunctuationSplit:
    def test_spanish_punctuation_is_a_separator(self):
        assert tokenize("¿Qué pasó?¡Nada!") == ["qué", "pasó", "nada"]

    def test_slash_comma_semicolon_and_period_split_words(self):
        assert tokenize("web/app,precio;descuento.fin") == ["web", "app", "precio", "descuento", "fin"]

    def test_digits_are_kept_and_percent_dropped(self):
        assert tokenize("un 20% de descuento") == ["un", "20", "de", "descuento"]

    def test_runs_of_separators_and_outer_spaces_give_no_empty_tokens(self):
        assert tokenize("  hola --- ,,, mundo  ") == ["hola", "mundo"]


class TestTokenizeArrow:
    def test_keeps_order_and_length(self):
        assert tokenize_many(["b a", "c"]) == [["b", "a"], ["c"]]

    def test_empty_string_gives_empty_list(self):
        assert tokenize_many([""]) == [[]]

    def test_whitespace_only_gives_empty_list(self):
        assert tokenize_many(["   \t "]) == [[]]

    def test_punctuation_only_gives_empty_list(self):
        # A text with no letters or digits has no tokens (the batching docstring relies on this).
        assert tokenize_many(["...", "¡¿?!"]) == [[], []]

    def test_empty_input(self):
        assert tokenize_many([]) == []

    def test_arrow_nulls_stay_null(self):
        assert tokenize_arrow(pa.array([None, "a"], pa.string())).to_pylist() == [None, ["a"]]

    def test_large_string_input_is_accepted(self):
        assert tokenize_arrow(pa.array(["Hola Mundo"], pa.large_string())).to_pylist() == [["hola", "mundo"]]


# -------------------------------------------------------------------------------------------- vocabulary


class TestVocabularyOrder:
    def test_most_frequent_first_then_alphabetical(self):
        vocab = Vocabulary.build([["b", "a", "c"], ["c", "a", "d"], ["c", "b"]])
        # counts: c=3, a=2, b=2, d=1 -> c, then the tie a/b alphabetically, then d
        assert vocab.itos == (PAD, UNK, "c", "a", "b", "d")

    def test_row_order_does_not_change_ids(self):
        rows = [["zeta", "alfa"], ["beta"], ["alfa", "zeta", "beta"]]
        assert Vocabulary.build(rows).itos == Vocabulary.build(list(reversed(rows))).itos

    def test_special_ids(self):
        vocab = Vocabulary.build([["hola"]])
        assert (PAD_ID, UNK_ID) == (0, 1)
        assert vocab.itos[PAD_ID] == PAD and vocab.itos[UNK_ID] == UNK
        assert vocab.id_of("hola") == 2
        assert vocab.id_of("nunca-visto") == UNK_ID

    def test_empty_input_gives_only_special_tokens(self):
        assert Vocabulary.build([]).itos == (PAD, UNK)


class TestVocabularyMinFreq:
    def test_rare_tokens_are_dropped(self):
        vocab = Vocabulary.build([["a", "a", "b"], ["a", "c", "c"]], min_freq=2)
        assert vocab.itos == (PAD, UNK, "a", "c")
        assert vocab.id_of("b") == UNK_ID


class TestVocabularyMaxSize:
    def test_max_size_counts_the_special_tokens(self):
        vocab = Vocabulary.build([["a", "a", "a", "b", "b", "c"]], max_size=4)
        assert len(vocab) == 4
        assert vocab.itos == (PAD, UNK, "a", "b")

    def test_max_size_two_keeps_only_specials(self):
        assert Vocabulary.build([["a"]], max_size=2).itos == (PAD, UNK)


class TestVocabularyConstruction:
    def test_rejects_itos_without_specials_first(self):
        with pytest.raises(ValueError, match=r"\[PAD\]"):
            Vocabulary(("hola", PAD, UNK))

    def test_contains_and_decode(self):
        vocab = Vocabulary.build([["x", "y"]])
        assert "x" in vocab and "z" not in vocab
        assert vocab.decode([0, 1, vocab.id_of("y")]) == [PAD, UNK, "y"]


class TestVocabularyPrefixChars:
    def test_inflections_share_one_entry(self):
        vocab = Vocabulary.build([["precio", "precios"], ["cobró"]], form=TokenForm(prefix_chars=4))
        # "prec" is counted twice (precio + precios), so it comes before "cobr"
        assert vocab.itos == (PAD, UNK, "prec", "cobr")

    def test_lookup_cuts_unseen_inflections(self):
        vocab = Vocabulary.build([["precio"]], form=TokenForm(prefix_chars=4))
        assert vocab.id_of("precioso") == vocab.id_of("precio") == 2
        assert vocab.id_of("pre") == UNK_ID  # shorter than the prefix and not in the vocabulary

    def test_keys(self):
        vocab = Vocabulary.build([["precio"]], form=TokenForm(prefix_chars=4))
        assert vocab.keys(["precios", "al"]) == ["prec", "al"]
        assert Vocabulary.build([["precio"]]).keys(["precios"]) == ["precios"]

    def test_encode_arrow_applies_the_prefix(self):
        vocab = Vocabulary.build([["cobró"]], form=TokenForm(prefix_chars=4))
        assert vocab.encode_arrow(_tokens(["cobraron", "nada"])).to_pylist() == [[2, UNK_ID]]


class TestVocabularyJson:
    def test_round_trip(self):
        vocab = Vocabulary.build([["canción", "año", "año"], ["pingüino"]], form=TokenForm(prefix_chars=5))
        again = Vocabulary.from_json(vocab.to_json())
        assert again == vocab
        assert again.form.prefix_chars == 5
        assert [again.id_of(t) for t in ["año", "canciones", "pingüinos", "zzz"]] == [
            vocab.id_of(t) for t in ["año", "canciones", "pingüinos", "zzz"]
        ]

    def test_json_keeps_non_ascii_text(self):
        text = Vocabulary.build([["año"]]).to_json()
        assert "año" in text
        assert json.loads(text) == {"form": TokenForm().to_dict(), "itos": [PAD, UNK, "año"]}


class TestEncodeArrow:
    def test_unknown_tokens_map_to_unk(self):
        vocab = Vocabulary.build([["hola", "mundo"]])
        ids = vocab.encode_arrow(_tokens(["hola", "adiós", "mundo"], [], None)).to_pylist()
        assert ids == [[vocab.id_of("hola"), UNK_ID, vocab.id_of("mundo")], [], None]

    def test_chunked_input(self):
        vocab = Vocabulary.build([["a"]])
        chunked = pa.chunked_array([_tokens(["a"]), _tokens(["b", "a"])])
        assert vocab.encode_arrow(chunked).to_pylist() == [[2], [UNK_ID, 2]]

    def test_unknown_share(self):
        vocab = Vocabulary.build([["a"]])
        assert vocab.unknown_share(_tokens(["a", "b", "c", "a"])) == 0.5
        assert vocab.unknown_share(_tokens([])) == 0.0


# ---------------------------------------------------------------------------------------------- batching


def _row(encoded: EncodedTexts, i: int) -> list[int]:
    start, length = encoded.starts[i], encoded.lengths[i]
    return encoded.ids[start : start + length].tolist()


class TestEncodeTokens:
    def test_rows_are_encoded_in_order(self):
        vocab = Vocabulary.build([["a", "b"]])
        encoded = encode_tokens(_tokens(["a", "b"], ["b"]), vocab, max_len=10)
        assert len(encoded) == 2
        assert _row(encoded, 0) == [vocab.id_of("a"), vocab.id_of("b")]
        assert _row(encoded, 1) == [vocab.id_of("b")]

    def test_empty_and_null_rows_become_a_single_unk(self):
        vocab = Vocabulary.build([["a"]])
        encoded = encode_tokens(_tokens([], ["a"], None), vocab, max_len=10)
        assert encoded.lengths.tolist() == [1, 1, 1]
        assert [_row(encoded, i) for i in range(3)] == [[UNK_ID], [2], [UNK_ID]]

    def test_empty_text_becomes_a_single_unk(self):
        vocab = Vocabulary.build([["hola"]])
        encoded = encode_texts(["", "hola"], vocab, max_len=10)
        assert _row(encoded, 0) == [UNK_ID]
        assert _row(encoded, 1) == [2]

    def test_punctuation_only_text_is_unk_even_if_training_saw_such_a_text(self):
        # The vocabulary is built from tokenised training texts; a punctuation-only training text
        # must not put a "" token into it, or punctuation-only texts would encode to that id.
        vocab = Vocabulary.build(tokenize_many(["hola", "¡¡!!"]))
        assert "" not in vocab
        assert _row(encode_texts(["..."], vocab, max_len=10), 0) == [UNK_ID]

    def test_long_rows_keep_their_first_max_len_tokens(self):
        vocab = Vocabulary.build([["a", "b", "c", "d", "e"]])
        encoded = encode_tokens(_tokens(["a", "b", "c", "d", "e"], ["e"]), vocab, max_len=3)
        assert encoded.lengths.tolist() == [3, 1]
        assert vocab.decode(_row(encoded, 0)) == ["a", "b", "c"]
        assert vocab.decode(_row(encoded, 1)) == ["e"]

    def test_take_selects_rows(self):
        vocab = Vocabulary.build([["a", "b"]])
        encoded = encode_tokens(_tokens(["a"], ["b", "b"], ["a", "b"]), vocab, max_len=10)
        picked = encoded.take(np.array([2, 0]))
        assert [_row(picked, i) for i in range(2)] == [_row(encoded, 2), _row(encoded, 0)]


class TestPadRows:
    def _encoded(self):
        vocab = Vocabulary.build([["a", "b", "c"]])
        texts = _tokens(["a"], ["a", "b", "c", "a", "b"], ["b", "c"])
        return vocab, encode_tokens(texts, vocab, max_len=512)

    def test_pads_to_the_batch_longest_row_not_max_len(self):
        vocab, encoded = self._encoded()
        ids, lengths = pad_rows(encoded, np.array([0, 2]))
        assert ids.shape == (2, 2)  # longest of rows 0 and 2 is 2 tokens, max_len (512) is irrelevant
        assert lengths.tolist() == [1, 2]
        assert ids.tolist() == [[vocab.id_of("a"), PAD_ID], [vocab.id_of("b"), vocab.id_of("c")]]

    def test_full_batch_width_is_longest_row(self):
        _, encoded = self._encoded()
        ids, lengths = pad_rows(encoded, np.array([0, 1, 2]))
        assert ids.shape == (3, 5)
        assert ids.dtype == torch.int64
        assert lengths.tolist() == [1, 5, 2]
        # every position after a row's length is [PAD], every position before is a real token
        real = torch.arange(5)[None, :] < lengths[:, None]
        assert torch.all(ids[~real] == PAD_ID)
        assert torch.all(ids[real] != PAD_ID)

    def test_row_order_follows_the_request(self):
        _, encoded = self._encoded()
        forward, _ = pad_rows(encoded, np.array([1, 0]))
        backward, _ = pad_rows(encoded, np.array([0, 1]))
        assert torch.equal(forward, backward.flip(0))


class TestLengthSortedBatches:
    def test_every_row_once_in_length_order(self):
        vocab = Vocabulary.build([["a"]])
        encoded = encode_tokens(_tokens(["a"] * 3, ["a"], ["a"] * 5, ["a"] * 2), vocab, max_len=10)
        batches = list(length_sorted_batches(encoded, batch_size=3))
        assert [len(b) for b in batches] == [3, 1]
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == [0, 1, 2, 3]
        assert encoded.lengths[flat].tolist() == [1, 2, 3, 5]


class TestSpanishTokenForm:
    FORM = TokenForm(stem=True, drop_stopwords=True)

    def test_inflections_share_a_stem(self):
        keys = [self.FORM.key(word) for word in ("envío", "envíos", "precio", "precios")]
        assert keys[0] == keys[1] and keys[2] == keys[3]

    def test_stop_words_are_dropped(self):
        assert self.FORM.key("de") is None and self.FORM.key("que") is None
        rows = self.FORM.keys_arrow(_tokens(["el", "pedido", "de", "ayer"], ["y", "de"], None)).to_pylist()
        assert rows == [[self.FORM.key("pedido"), self.FORM.key("ayer")], [], None]

    def test_each_distinct_token_is_keyed_once_per_call(self, monkeypatch):
        import lstm_model.token_form as token_form

        seen: list[list[str]] = []
        real = token_form.TokenForm._keys
        monkeypatch.setattr(
            token_form.TokenForm, "_keys", lambda self, words: seen.append(list(words)) or real(self, words)
        )
        self.FORM.keys_arrow(_tokens(["pedido", "pedido", "roto"], ["pedido", "roto"]))
        assert [sorted(call) for call in seen] == [["pedido", "roto"]]

    def test_strip_accents_keeps_enye(self):
        form = TokenForm(strip_accents=True)
        assert [form.key(w) for w in ("envío", "pingüino", "año")] == ["envio", "pinguino", "año"]

    def test_vocabulary_keys_are_stems_and_lookup_stems_too(self):
        vocab = Vocabulary.build([["envíos", "rápidos"], ["envío"]], form=self.FORM)
        assert vocab.id_of("envío") == vocab.id_of("envíos") != UNK_ID
        assert vocab.id_of("de") == UNK_ID  # a stop word is never a key
