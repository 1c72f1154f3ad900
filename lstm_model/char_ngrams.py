"""Character n-grams of words: what the second model reads.

Models that read whole words or stems learn little from a few labelled comments: a customer who
writes "reembolzo", "devolvieron" or "cobraron" where the label comment said "reembolso",
"devolución" or "cobro" gives them an unknown token. Character n-grams within words (" reem",
"embol", "bolso ") are shared by those forms, so a label comment teaches about every word that
shares pieces with its own (``bench/label_features_probe.py``: 0.75 macro-F1 on the free-form dev
half for words, 0.84 for n-grams, with the same 80 label comments).

Texts are stored as token ids into a table of their distinct tokens, and each distinct token's
n-gram ids are computed once: a batch of texts is expanded into n-gram ids only when it is padded
(:meth:`NgramTexts.pad`). So memory is that of the tokens, not of the ~30 n-grams per word.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lstm_model.token_form import strip_accents
from lstm_model.vocab import PAD_ID
from lstm_model.vocab import UNK_ID
from lstm_model.vocab import Vocabulary
from lstm_model.vocab import ranked_keys


@dataclass(frozen=True, kw_only=True)
class CharNgramSpec:
    """Which n-grams a word gives: lengths ``min_n``..``max_n`` of the accent-free word between spaces.

    Only the first ``max_word_chars`` characters of a word count: Spanish words are shorter, and a
    5,000-character "jajaja..." or pasted code would otherwise give ~20,000 n-grams and widen a whole
    padded batch to them (hundreds of MB for one comment).
    """

    min_n: int = 2
    max_n: int = 5
    max_word_chars: int = 30

    def __post_init__(self) -> None:
        if not 1 <= self.min_n <= self.max_n:
            raise ValueError(f"need 1 <= min_n <= max_n, got {self.min_n}, {self.max_n}")

    def grams(self, token: str) -> list[str]:
        """ "envío" -> " e", "en", ..., " envi", ..., "vio "; the spaces mark the word's edges."""
        word = f" {strip_accents(token[: self.max_word_chars])} "
        return [word[i : i + n] for n in range(self.min_n, self.max_n + 1) for i in range(len(word) - n + 1)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _repeat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each (s, n), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(before, lengths) + np.repeat(starts, lengths)


@dataclass(frozen=True)
class NgramTexts:
    """Texts as token ids into a table of distinct tokens, and each token's n-gram ids.

    Has what training and inference use of :class:`~lstm_model.batching.EncodedTexts`: ``len``,
    ``lengths`` (here the n-gram count, for length-sorted batches), ``take`` and ``pad``.
    """

    token_ids: np.ndarray  # int64, flat: row i is token_ids[token_starts[i] : + token_lengths[i]]
    token_starts: np.ndarray
    token_lengths: np.ndarray
    gram_ids: np.ndarray  # int64, flat: distinct token t is gram_ids[gram_starts[t] : + gram_lengths[t]]
    gram_starts: np.ndarray
    gram_lengths: np.ndarray
    lengths: np.ndarray = field(init=False)  # n-grams per row, >= 1 (a row with none reads one [UNK])

    def __post_init__(self) -> None:
        per_token = self.gram_lengths[self.token_ids]
        rows = np.repeat(np.arange(len(self.token_lengths)), self.token_lengths)
        position = _repeat_ranges(self.token_starts, self.token_lengths)
        counts = np.bincount(rows, weights=per_token[position], minlength=len(self.token_lengths))
        object.__setattr__(self, "lengths", np.maximum(counts.astype(np.int64), 1))

    def __len__(self) -> int:
        return len(self.token_lengths)

    def take(self, rows: np.ndarray) -> NgramTexts:
        return NgramTexts(
            self.token_ids,
            self.token_starts[rows],
            self.token_lengths[rows],
            self.gram_ids,
            self.gram_starts,
            self.gram_lengths,
        )

    def pad(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows' n-gram ids, right-padded to their own longest row: (ids [B, T], lengths [B])."""
        lengths = self.lengths[rows]
        tokens = self.token_ids[_repeat_ranges(self.token_starts[rows], self.token_lengths[rows])]
        token_row = np.repeat(np.arange(len(rows)), self.token_lengths[rows])
        grams = self.gram_ids[_repeat_ranges(self.gram_starts[tokens], self.gram_lengths[tokens])]
        gram_row = np.repeat(token_row, self.gram_lengths[tokens])
        row_begin = np.searchsorted(gram_row, np.arange(len(rows)))
        column = np.arange(len(grams)) - row_begin[gram_row]
        ids = np.full((len(rows), int(lengths.max()) if len(rows) else 0), PAD_ID, dtype=np.int64)
        ids[:, 0] = UNK_ID  # rows without n-grams read [UNK]; overwritten where a row has some
        ids[gram_row, column] = grams
        return torch.from_numpy(ids), torch.from_numpy(lengths)


@dataclass(frozen=True)
class NgramVocabulary:
    """The n-grams the second model has a weight for; ``itos[i]`` has id ``i`` ([PAD]=0, [UNK]=1)."""

    itos: tuple[str, ...]
    spec: CharNgramSpec = CharNgramSpec()
    # The n-grams as plain vocabulary keys: the [PAD]/[UNK] check and the key -> id index.
    keys: Vocabulary = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.itos)) != len(self.itos):
            raise ValueError("n-grams repeat in the n-gram vocabulary")
        object.__setattr__(self, "keys", Vocabulary(self.itos))

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(
        cls,
        tokens: pa.ListArray | pa.ChunkedArray,
        *,
        spec: CharNgramSpec = CharNgramSpec(),
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> NgramVocabulary:
        """The n-grams of the training tokens seen at least ``min_freq`` times, most frequent first
        (ties alphabetical, so the same data gives the same ids). Counted per distinct token."""
        if isinstance(tokens, pa.ChunkedArray):
            tokens = tokens.combine_chunks()
        counted = pc.value_counts(tokens.flatten())
        counts: Counter[str] = Counter()
        for token, n in zip(
            counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True
        ):
            for gram in spec.grams(token):
                counts[gram] += n
        return cls(ranked_keys(counts, min_freq=min_freq, max_size=max_size), spec)

    def encode(self, tokens: pa.ListArray | pa.ChunkedArray, max_tokens: int) -> NgramTexts:
        """A list<string> array of tokens as :class:`NgramTexts`, reading at most ``max_tokens`` tokens
        per row (as the LSTM does). Unknown n-grams are left out; null rows have no tokens."""
        if isinstance(tokens, pa.ChunkedArray):
            tokens = tokens.combine_chunks()
        if tokens.null_count:
            tokens = pc.fill_null(tokens, pa.scalar([], tokens.type))
        encoded = pc.dictionary_encode(tokens.flatten())
        per_token = [self.keys.known_ids(self.spec.grams(t)) for t in encoded.dictionary.to_pylist()]
        gram_lengths = np.fromiter(map(len, per_token), dtype=np.int64, count=len(per_token))
        gram_ids = np.fromiter(
            (i for ids in per_token for i in ids), dtype=np.int64, count=int(gram_lengths.sum())
        )
        offsets = tokens.offsets.to_numpy().astype(np.int64)
        return NgramTexts(
            token_ids=encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
            token_starts=offsets[:-1] - offsets[0],
            token_lengths=np.minimum(np.diff(offsets), max_tokens),
            gram_ids=gram_ids,
            gram_starts=np.cumsum(gram_lengths) - gram_lengths,
            gram_lengths=gram_lengths,
        )

    def to_json(self) -> str:
        return json.dumps({"spec": self.spec.to_dict(), "itos": list(self.itos)}, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NgramVocabulary:
        return cls(tuple(data["itos"]), CharNgramSpec(**data.get("spec", {})))
