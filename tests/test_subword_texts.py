"""Which rows read a known word, for comments longer than the model reads and for subsets of rows.

``token_ids`` holds every word of every row, ``token_lengths`` only what the LSTM reads (at most
``max_len``), so a row's words must be found through its start. Reading the flat ids as if they were
back to back failed a whole batch with an IndexError as soon as one comment had more words than
``max_len`` (and mixed rows up after ``take``).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import tiny_bundle
from lstm_model.predict import Classifier
from lstm_model.tokenizer import tokenize_arrow

LONG = " ".join(["el pedido llegó tarde y la caja venía rota"] * 6)  # 54 words, max_len is 16
UNREADABLE = "zzzq xxwv qqqk"  # no n-gram a model trained on Spanish comments knows


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    bundle, _ = tiny_bundle()
    classifier = Classifier.from_bundle(bundle)
    assert classifier.subwords is not None and classifier.max_len < len(LONG.split())
    return classifier


def _subword_texts(classifier: Classifier, texts: list[str]):
    import pyarrow as pa

    return classifier.subwords.encode(tokenize_arrow(pa.array(texts)), classifier.max_len)


def test_a_comment_longer_than_max_len_is_scored(classifier):
    scores = classifier.score([LONG, "El pedido llegó dañado.", LONG + " fin"])
    assert len(scores.probs) == 3
    assert scores.known.tolist() == [True, True, True]


def test_each_row_is_judged_on_its_own_words(classifier):
    texts = [LONG, UNREADABLE, "El pedido llegó dañado.", UNREADABLE + " " + UNREADABLE]
    known = _subword_texts(classifier, texts).reads_a_known_word()
    one_by_one = [bool(_subword_texts(classifier, [t]).reads_a_known_word()[0]) for t in texts]
    assert known.tolist() == one_by_one
    assert one_by_one[0] and one_by_one[2]


def test_a_subset_of_rows_reads_its_own_words(classifier):
    texts = [LONG, UNREADABLE, "El pedido llegó dañado.", UNREADABLE]
    encoded = _subword_texts(classifier, texts)
    rows = np.array([3, 0, 2])
    assert encoded.take(rows).reads_a_known_word().tolist() == encoded.reads_a_known_word()[rows].tolist()
