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
from functools import cached_property
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

# RE2 (Arrow's regex engine): a word whose characters all lie in U+0001-U+024F. NUL is left out
# because strip_accents uses it as a placeholder.
_LATIN_WORD = r"^[\x{1}-\x{24F}]*$"
_PLACEHOLDER = "\ue000"  # a private-use character, never in a Latin word: keeps ñ through NFD


def _strip_latin_accents(words: pa.StringArray) -> pa.StringArray:
    """:func:`strip_accents` in Arrow, exact for words of characters up to U+024F (see ``_LATIN_WORD``)."""
    kept = pc.replace_substring(words, "ñ", _PLACEHOLDER)
    bare = pc.replace_substring_regex(pc.utf8_normalize(kept, form="NFD"), r"[\x{300}-\x{36F}]", "")
    return pc.replace_substring(bare, _PLACEHOLDER, "ñ")


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

    def words(self, tokens: pa.StringArray) -> pa.StringArray:
        """``strip_accents(token[:max_word_chars])`` of each token, without the edge spaces.

        Words of Latin letters (up to U+024F, which holds every Spanish one) lose their accents in
        Arrow: in that range decomposing (NFD) and dropping the combining accents U+0300-U+036F gives
        exactly what :func:`strip_accents` gives (a test checks every character). Only words with a
        character beyond it (Greek, Hangul, emoji, a lone combining accent) go through Python.
        """
        cut = pc.utf8_slice_codeunits(tokens, 0, self.max_word_chars)
        accented = pc.invert(pc.string_is_ascii(cut))
        if not pc.any(accented).as_py():
            return cut
        words = pc.filter(cut, accented)  # ASCII words have no accent: only these are worked on
        stripped = _strip_latin_accents(words)
        foreign = pc.invert(pc.match_substring_regex(words, _LATIN_WORD))
        if pc.any(foreign).as_py():
            in_python = [strip_accents(t) for t in pc.filter(words, foreign).to_pylist()]
            stripped = pc.replace_with_mask(stripped, foreign, pa.array(in_python, pa.string()))
        return pc.replace_with_mask(cut, accented, stripped)

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

    ROW_BLOCK = 65_536  # rows counted at once in __post_init__

    def __post_init__(self) -> None:
        # A block of rows at a time: for half a million texts the per-token arrays of all rows at
        # once (positions, counts, weights: ~8M each) held ~300 MB for a moment.
        counts = np.empty(len(self.token_lengths), dtype=np.int64)
        for begin in range(0, len(counts), self.ROW_BLOCK):
            starts = self.token_starts[begin : begin + self.ROW_BLOCK]
            lengths = self.token_lengths[begin : begin + self.ROW_BLOCK]
            position = _repeat_ranges(starts, lengths)
            rows = np.repeat(np.arange(len(lengths)), lengths)
            per_token = self.gram_lengths[self.token_ids[position]]
            counts[begin : begin + len(lengths)] = np.bincount(
                rows, weights=per_token, minlength=len(lengths)
            )
        object.__setattr__(self, "lengths", np.maximum(counts, 1))

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


class PackedNgrams:
    """N-gram lookup without Python per n-gram: an n-gram is packed into one int64 (``bits`` per
    character, the character's rank in the vocabulary's alphabet, 1-based), so a whole block of words
    is looked up among the vocabulary's packed n-grams at once (``pyarrow.compute.index_in``).

    Exact: a character outside the alphabet packs to 0, and an n-gram holding a 0 is unknown (as it is:
    no vocabulary n-gram has that character). Used when ``max_n * bits`` fits in 63 bits (alphabets of
    up to 4,095 characters for 5-grams); otherwise :meth:`NgramVocabulary.encode` looks up in Python.
    """

    BLOCK = 8192  # words per block: [BLOCK, ~120 n-gram positions] int64 stays ~8 MB

    def __init__(self, grams: tuple[str, ...], spec: CharNgramSpec) -> None:
        self.spec = spec
        self.alphabet = np.array(sorted({ord(c) for gram in grams for c in gram}), dtype=np.uint32)
        self.bits = max(1, int(len(self.alphabet)).bit_length())
        self.fits = spec.max_n * self.bits <= 63 and 0 not in self.alphabet
        if not self.fits:
            return
        sizes = np.array([len(gram) for gram in grams], dtype=np.int64)
        keys, ids = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for n in range(spec.min_n, spec.max_n + 1):
            of_size = np.flatnonzero(sizes == n)
            if len(of_size):
                text = np.array([grams[i] for i in of_size], dtype=f"<U{n}")
                keys.append(self._pack(self._codes(text.view(np.uint32).reshape(len(of_size), n)), n)[:, 0])
                ids.append(of_size)
        self.keys = pa.array(np.concatenate(keys), pa.int64())  # Arrow's hash lookup (index_in)
        self.ids = np.concatenate(ids)

    def _codes(self, points: np.ndarray) -> np.ndarray:
        """Code points -> 1-based rank in the alphabet; 0 for any other character (and for padding)."""
        if len(self.alphabet) == 0:
            return np.zeros(points.shape, dtype=np.int64)
        rank = np.searchsorted(self.alphabet, points).clip(max=len(self.alphabet) - 1)
        return np.where(self.alphabet[rank] == points, rank + 1, 0).astype(np.int64)

    def _pack(self, codes: np.ndarray, n: int) -> np.ndarray:
        """[words, positions] packed n-grams starting at each position; 0 where one character is 0."""
        width = codes.shape[1] - n + 1
        packed = np.zeros((codes.shape[0], width), dtype=np.int64)
        valid = np.ones((codes.shape[0], width), dtype=bool)
        for k in range(n):
            column = codes[:, k : k + width]
            packed |= column << (self.bits * k)
            valid &= column != 0
        packed[~valid] = 0
        return packed

    def lookup(self, words: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
        """(gram ids, count per word) of the known n-grams of each word (``CharNgramSpec.words``),
        in the order of :meth:`CharNgramSpec.grams`."""
        empty = np.zeros(0, dtype=np.int64)
        if len(self.keys) == 0:  # no n-gram is known
            return empty, np.zeros(len(words), dtype=np.int64)
        blocks = [self._lookup_block(words.slice(b, self.BLOCK)) for b in range(0, len(words), self.BLOCK)]
        return (
            np.concatenate([empty, *(ids for ids, _ in blocks)]),
            np.concatenate([empty, *(counts for _, counts in blocks)]),
        )

    def _lookup_block(self, words: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
        lengths = pc.utf8_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
        width = int(lengths.max()) if len(lengths) else 0
        space = np.uint32(ord(" "))
        points = np.zeros((len(words), width + 2), dtype=np.uint32)
        points[:, 0] = space
        if width:
            text = words.to_numpy(zero_copy_only=False).astype(f"<U{width}")
            points[:, 1 : width + 1] = text.view(np.uint32).reshape(len(words), width)
        points[np.arange(len(words)), lengths + 1] = space
        codes = self._codes(points)
        found = [np.zeros((len(words), 0), dtype=np.int64)]  # words too short for min_n have none
        for n in range(self.spec.min_n, min(self.spec.max_n, width + 2) + 1):
            packed = self._pack(codes, n)
            ids = np.full(packed.shape, -1, dtype=np.int64)
            whole = packed != 0  # only n-grams of known characters within the word are looked up
            where = pc.fill_null(pc.index_in(packed[whole], value_set=self.keys), -1).to_numpy()
            ids[whole] = np.where(where >= 0, self.ids[where], -1)
            found.append(ids)
        table = np.concatenate(found, axis=1)  # row-major: word, then n, then start
        known = table >= 0
        return table[known], known.sum(axis=1)


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

    ENCODE_BLOCK = 1 << 20  # tokens looked up per call in encode()

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
        flat = tokens.flatten()
        distinct = pc.unique(flat)
        gram_ids, gram_lengths = self._gram_ids(distinct)
        # Each token's position among the distinct ones, a block at a time: one dictionary_encode of
        # the ~8M tokens of half a million texts held ~400 MB of hash table and copies at once.
        token_ids = np.empty(len(flat), dtype=np.int64)
        for begin in range(0, len(flat), self.ENCODE_BLOCK):
            block = pc.index_in(flat.slice(begin, self.ENCODE_BLOCK), value_set=distinct)
            token_ids[begin : begin + len(block)] = block.to_numpy(zero_copy_only=False)
        offsets = tokens.offsets.to_numpy().astype(np.int64)
        return NgramTexts(
            token_ids=token_ids,
            token_starts=offsets[:-1] - offsets[0],
            token_lengths=np.minimum(np.diff(offsets), max_tokens),
            gram_ids=gram_ids,
            gram_starts=np.cumsum(gram_lengths) - gram_lengths,
            gram_lengths=gram_lengths,
        )

    @cached_property
    def packed(self) -> PackedNgrams:
        return PackedNgrams(self.itos[UNK_ID + 1 :], self.spec)

    def _gram_ids(self, distinct: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
        """(flat n-gram ids, count per token) of each distinct token's known n-grams."""
        # NUL packs like padding (and strip_accents uses it); the tokenizer never gives one.
        if self.packed.fits and not pc.any(pc.match_substring(distinct, "\0")).as_py():
            ids, counts = self.packed.lookup(self.spec.words(distinct))
            return ids + UNK_ID + 1, counts  # packed ids count from the first real n-gram
        return self._gram_ids_in_python(distinct)

    def _gram_ids_in_python(self, distinct: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
        per_token = [self.keys.known_ids(self.spec.grams(t)) for t in distinct.to_pylist()]
        counts = np.fromiter(map(len, per_token), dtype=np.int64, count=len(per_token))
        ids = np.fromiter((i for ids in per_token for i in ids), dtype=np.int64, count=int(counts.sum()))
        return ids, counts

    def to_json(self) -> str:
        return json.dumps({"spec": self.spec.to_dict(), "itos": list(self.itos)}, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NgramVocabulary:
        return cls(tuple(data["itos"]), CharNgramSpec(**data.get("spec", {})))
