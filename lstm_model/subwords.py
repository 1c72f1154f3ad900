"""What the subword LSTM reads: each word as the bag of its character n-grams (fastText's idea).

A model that reads whole stems gets ``[UNK]`` for every word its training texts lack, and in chats
without accents, typos, abbreviations and slang that is most words ("pq", "reembolzo", "sta", "kiero").
Built from its character n-grams, a misspelt or accent-free word lands near the word it stands for,
and a new inflection near its siblings, so the LSTM reads something for nearly every word.

Texts are kept as in :class:`~lstm_model.char_ngrams.NgramTexts` (token ids into a table of distinct
words, each word's n-gram ids once); a batch is padded as a [B, T] matrix of batch-local word indices
plus the flat n-gram ids of the batch's distinct words, which the network turns into one vector per
word (``nn.EmbeddingBag``) before the LSTM reads them in order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lstm_model.char_ngrams import CharNgramSpec
from lstm_model.char_ngrams import NgramTexts
from lstm_model.char_ngrams import NgramVocabulary
from lstm_model.char_ngrams import _repeat_ranges
from lstm_model.token_form import TokenForm
from lstm_model.vocab import PAD_ID
from lstm_model.vocab import UNK_ID

FIRST_WORD = 2  # batch-local word indices: 0 padding, 1 [UNK] (a masked word, or a row with none)


@dataclass(frozen=True)
class SubwordVocabulary:
    """The LSTM's n-grams and which words it reads (stop words dropped or not; never stemmed)."""

    ngrams: NgramVocabulary
    form: TokenForm = TokenForm(drop_stopwords=True)

    def __len__(self) -> int:
        return len(self.ngrams)

    @classmethod
    def build(
        cls, tokens: pa.ListArray, *, form: TokenForm, spec: CharNgramSpec, max_size: int | None
    ) -> SubwordVocabulary:
        """The n-grams of the words the LSTM reads in ``tokens`` (tokenised texts), most frequent first."""
        return cls(NgramVocabulary.build(form.keys_arrow(tokens), spec=spec, max_size=max_size), form)

    def encode(
        self, tokens: pa.ListArray, max_len: int, *, frame_words: frozenset[str] = frozenset()
    ) -> SubwordTexts:
        """Tokenised texts as the LSTM reads them (at most ``max_len`` words each); ``frame_words``
        (template words) are marked so that training can mask them."""
        words = self.form.keys_arrow(tokens)
        frame = None
        if frame_words:
            flat = words.flatten()
            distinct = pc.unique(flat)  # the order NgramVocabulary.encode numbers the distinct words in
            frame = pc.is_in(distinct, value_set=pa.array(sorted(frame_words), pa.string()))
            frame = frame.to_numpy(zero_copy_only=False)
        return SubwordTexts(self.ngrams.encode(words, max_len), frame)

    def frame_words(self, tokens: pa.ListArray, labels: Any, *, min_class_coverage: float) -> frozenset[str]:
        """The template words (see :func:`~lstm_model.frames.find_frame_tokens`) among the words read."""
        from lstm_model.frames import find_frame_tokens

        found = find_frame_tokens(self.form.keys_arrow(tokens), labels, min_class_coverage=min_class_coverage)
        return frozenset(found)

    def to_json(self) -> str:
        return json.dumps(
            {"form": self.form.to_dict(), "spec": self.ngrams.spec.to_dict(), "itos": list(self.ngrams.itos)},
            ensure_ascii=False,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubwordVocabulary:
        return cls(NgramVocabulary.from_dict(data), TokenForm.from_dict(data["form"]))


@dataclass(frozen=True)
class SubwordBatch:
    """One padded batch: word indices [B, T] into the batch's distinct words, and their n-gram ids."""

    words: torch.Tensor  # int64 [B, T]: 0 padding, 1 [UNK], FIRST_WORD + k the batch's k-th word
    gram_ids: torch.Tensor  # int64, flat: the n-grams of word k are gram_ids[offsets[k] : offsets[k+1]]
    gram_offsets: torch.Tensor  # int64 [K]
    frame: np.ndarray | None = None  # bool [FIRST_WORD + K]: which indices are template words

    @property
    def shape(self) -> torch.Size:
        return self.words.shape

    def to(self, device: torch.device | str) -> SubwordBatch:
        return replace(
            self,
            words=self.words.to(device),
            gram_ids=self.gram_ids.to(device),
            gram_offsets=self.gram_offsets.to(device),
        )

    def masked(
        self, lengths: torch.Tensor, *, frame_prob: float, token_prob: float, rng: np.random.Generator
    ) -> SubwordBatch:
        """Template words (with ``frame_prob``) and any word (with ``token_prob``) read as [UNK]."""
        from lstm_model.frames import mask_tokens

        words = self.words.numpy()
        real = np.arange(words.shape[1])[None, :] < lengths.numpy()[:, None]
        masked = mask_tokens(
            words, real, self.frame, frame_prob=frame_prob if self.frame is not None else 0.0,
            token_prob=token_prob, rng=rng,
        )  # fmt: skip
        return replace(self, words=torch.from_numpy(masked))


@dataclass(frozen=True)
class SubwordTexts:
    """Texts as words, each word's n-grams stored once (see :class:`NgramTexts`).

    ``lengths`` are word counts (>= 1: a text with no word reads one [UNK]). With ``mask_frames``, every
    template word reads as [UNK] (how early stopping judges the validation texts).
    """

    grams: NgramTexts
    frame: np.ndarray | None = None  # bool per distinct word of ``grams``: a template word
    mask_frames: bool = False
    lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lengths", np.maximum(self.grams.token_lengths, 1))

    def __len__(self) -> int:
        return len(self.grams)

    def take(self, rows: np.ndarray) -> SubwordTexts:
        return SubwordTexts(self.grams.take(rows), self.frame, self.mask_frames)

    def reads_a_known_word(self) -> np.ndarray:
        """Bool per row: at least one of the words it reads has a known n-gram (stop words are not read).

        Each row's words are gathered through its start: ``token_ids`` also holds the words past
        ``max_len`` (``token_lengths`` is capped) and, after :meth:`take`, the rows not taken."""
        g = self.grams
        tokens = g.token_ids[_repeat_ranges(g.token_starts, g.token_lengths)]
        rows = np.repeat(np.arange(len(g.token_lengths)), g.token_lengths)
        return np.bincount(rows[g.gram_lengths[tokens] > 0], minlength=len(g.token_lengths)) > 0

    def with_frames_masked(self) -> SubwordTexts:
        return replace(self, mask_frames=True)

    def pad(self, rows: np.ndarray) -> tuple[SubwordBatch, torch.Tensor]:
        """The rows right-padded to their own longest one, and their lengths."""
        g = self.grams
        counts = g.token_lengths[rows]
        tokens = g.token_ids[_repeat_ranges(g.token_starts[rows], counts)]
        local, inverse = np.unique(tokens, return_inverse=True)
        width = max(int(counts.max()) if len(rows) else 1, 1)
        words = np.full((len(rows), width), PAD_ID, dtype=np.int64)
        words[:, 0] = UNK_ID  # rows with no word read one [UNK]; overwritten where a row has words
        row = np.repeat(np.arange(len(rows)), counts)
        column = np.arange(len(tokens)) - np.repeat(np.cumsum(counts) - counts, counts)
        words[row, column] = inverse.ravel() + FIRST_WORD
        frame = None
        if self.frame is not None:
            frame = np.concatenate([np.zeros(FIRST_WORD, dtype=bool), self.frame[local]])
            if self.mask_frames:
                words = np.where(frame[words], UNK_ID, words)
        gram_lengths = g.gram_lengths[local]
        gram_ids = g.gram_ids[_repeat_ranges(g.gram_starts[local], gram_lengths)]
        offsets = np.cumsum(gram_lengths) - gram_lengths
        batch = SubwordBatch(
            torch.from_numpy(words), torch.from_numpy(gram_ids), torch.from_numpy(offsets), frame
        )
        return batch, torch.from_numpy(np.maximum(counts, 1))
