"""How a token is keyed in the vocabulary: Spanish stems, stop words dropped, optional prefix cut.

Customers write "envíos", "envio", "enviaron", "ENVIO": keyed by their Snowball stem they share one
vocabulary entry, so words the templated training data never showed in that form still reach the
model. Scoring keys tokens exactly as training did: the form is saved in ``vocab.json``.

Millions of tokens are keyed per scoring chunk, but few of them are distinct: each distinct token is
stemmed once (Arrow dictionary-encodes them) and the result is spread back by index.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lstm_model.stopwords import SPANISH_STOPWORDS

_STEMMERS = threading.local()  # a stemmer object keeps state between calls: one per thread


def _spanish_stemmer():
    stemmer = getattr(_STEMMERS, "spanish", None)
    if stemmer is None:
        import snowballstemmer  # uses PyStemmer's C implementation when it is installed

        stemmer = _STEMMERS.spanish = snowballstemmer.stemmer("spanish")
    return stemmer


def strip_accents(word: str) -> str:
    """ "envío" -> "envio", "pingüino" -> "pinguino"; ñ stays (it is a letter of its own in Spanish)."""
    decomposed = unicodedata.normalize("NFD", word.replace("ñ", "\0"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("\0", "ñ")


_ACCENTLESS_STOPWORDS = frozenset(strip_accents(w) for w in SPANISH_STOPWORDS)


@dataclass(frozen=True, kw_only=True)
class TokenForm:
    """Token -> vocabulary key. The default (all off) keys whole words."""

    stem: bool = False  # Spanish Snowball stem
    drop_stopwords: bool = False  # Spanish stop words are removed from the sequence
    strip_accents: bool = False  # "envío" and "envio" are one key
    prefix_chars: int | None = None  # keep the first N characters (after stemming)

    def key(self, token: str) -> str | None:
        """The vocabulary key of one token, or None when the token is dropped."""
        return self._keys([token])[0]

    def _keys(self, tokens: list[str]) -> list[str | None]:
        words = [strip_accents(t) for t in tokens] if self.strip_accents else list(tokens)
        stopwords = self._stopwords if self.drop_stopwords else frozenset()
        keep = [w not in stopwords for w in words]
        if self.stem:
            words = _spanish_stemmer().stemWords(words)
        if self.prefix_chars:
            words = [w[: self.prefix_chars] for w in words]
        return [w if k else None for w, k in zip(words, keep, strict=True)]

    @property
    def _stopwords(self) -> frozenset[str]:
        return _ACCENTLESS_STOPWORDS if self.strip_accents else SPANISH_STOPWORDS

    def keys_arrow(self, tokens: pa.ListArray | pa.ChunkedArray) -> pa.ListArray:
        """A list<string> array of tokens as a list<string> array of keys (dropped tokens removed).

        Each distinct token is keyed once. Null rows stay null.
        """
        if isinstance(tokens, pa.ChunkedArray):
            tokens = tokens.combine_chunks()
        if self == TokenForm():
            return tokens
        values = tokens.flatten()
        encoded = pc.dictionary_encode(values)
        distinct = encoded.dictionary.to_pylist()
        keyed = pa.array(self._keys(distinct), pa.string()).take(encoded.indices)
        keep = pc.is_valid(keyed)
        parents = pc.list_parent_indices(tokens).filter(keep).to_numpy()
        counts = np.bincount(parents, minlength=len(tokens))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), keyed.filter(keep), mask=tokens.is_null())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenForm:
        return cls(**data)
