"""Ragged token ids and variable-length batches.

Each batch is right-padded only to its own longest row, and the model reads the LSTM output at each
row's last real token. The reference notebook padded every comment to 512 tokens and read position
511, which for a 16-token comment is the state after ~500 padding steps: the text is forgotten and
validation accuracy stays at chance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lstm_model.vocab import PAD_ID
from lstm_model.vocab import UNK_ID
from lstm_model.vocab import Vocabulary


@dataclass(frozen=True)
class EncodedTexts:
    """Token ids of many texts, stored flat: row ``i`` is ``ids[starts[i] : starts[i] + lengths[i]]``.

    Every row has at least one id: a text with no tokens (only punctuation, say) is encoded as a
    single [UNK], so the model always has a real step to read.
    """

    ids: np.ndarray  # int64, flat
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64, >= 1

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, rows: np.ndarray) -> EncodedTexts:
        return EncodedTexts(self.ids, self.starts[rows], self.lengths[rows])

    def pad(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad the given rows to their own longest length: (ids [B, T], lengths [B])."""
        lengths = self.lengths[rows]
        width = int(lengths.max())
        steps = np.arange(width)
        positions = self.starts[rows][:, None] + steps[None, :]
        real = steps[None, :] < lengths[:, None]
        ids = np.where(real, self.ids[np.where(real, positions, 0)], PAD_ID)
        return torch.from_numpy(ids), torch.from_numpy(lengths)


class BatchableTexts(Protocol):
    """What training and inference need of encoded texts: token ids (``EncodedTexts``) or character
    n-grams (``char_ngrams.NgramTexts``)."""

    lengths: np.ndarray

    def __len__(self) -> int: ...

    def take(self, rows: np.ndarray) -> BatchableTexts: ...

    def pad(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]: ...


def encode_tokens(tokens: pa.ListArray | pa.ChunkedArray, vocab: Vocabulary, max_len: int) -> EncodedTexts:
    """Encode a list<string> array, keeping at most the first ``max_len`` tokens of each row."""
    return encode_ids(vocab.encode_arrow(tokens), max_len)


def encode_ids(id_lists: pa.ListArray, max_len: int) -> EncodedTexts:
    """Ragged ids from a list<int32> array of token ids (see :meth:`Vocabulary.encode_arrow`)."""
    if id_lists.null_count:
        id_lists = pc.fill_null(id_lists, pa.scalar([], id_lists.type))
    offsets = id_lists.offsets.to_numpy().astype(np.int64)
    flat = id_lists.values.to_numpy(zero_copy_only=False).astype(np.int64)
    # Rows with no tokens point at a trailing [UNK] appended to the flat array.
    flat = np.append(flat, UNK_ID)
    lengths = np.diff(offsets)
    starts = offsets[:-1].copy()
    empty = lengths == 0
    starts[empty] = len(flat) - 1
    lengths = np.minimum(np.where(empty, 1, lengths), max_len)
    return EncodedTexts(flat, starts, lengths)


def pad_rows(encoded: BatchableTexts, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad the given rows to their own longest length: (ids [B, T], lengths [B])."""
    return encoded.pad(rows)


def length_sorted_batches(encoded: BatchableTexts, batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of similar length, for inference (little padding, same results)."""
    order = np.argsort(encoded.lengths, kind="stable")
    for begin in range(0, len(order), batch_size):
        yield order[begin : begin + batch_size]


def unique_rows(encoded: EncodedTexts) -> tuple[EncodedTexts, np.ndarray]:
    """The distinct id sequences and, for each row, the index of its sequence among them.

    Exact (rows of one length are compared as byte strings), so scoring the distinct sequences and
    spreading the results back gives the same numbers as scoring every row. Batches of customer
    comments repeat themselves a lot ("Excelente servicio"), and template-generated ones even more.
    Rows are grouped by length first, so the work and memory are those of the tokens themselves, not
    of every row padded to the longest.
    """
    if len(encoded) == 0:
        return encoded, np.zeros(0, dtype=np.int64)
    inverse = np.empty(len(encoded), dtype=np.int64)
    firsts: list[np.ndarray] = []
    found = 0
    for length in np.unique(encoded.lengths):
        rows = np.flatnonzero(encoded.lengths == length)
        matrix = encoded.ids[encoded.starts[rows][:, None] + np.arange(length)].astype(np.int32)
        keys = np.ascontiguousarray(matrix).view(np.dtype((np.void, 4 * int(length)))).ravel()
        _, first, where = np.unique(keys, return_index=True, return_inverse=True)
        firsts.append(rows[first])
        inverse[rows] = where.ravel() + found
        found += len(first)
    return encoded.take(np.concatenate(firsts)), inverse
