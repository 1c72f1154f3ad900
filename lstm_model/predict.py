"""Batch inference from a bundle: texts in, class probabilities out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lstm_model.batching import EncodedTexts, encode_ids, encode_tokens, length_sorted_batches, pad_rows, unique_rows
from lstm_model.bundle import ModelBundle
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import autocast_for, resolve_device
from lstm_model.vocab import UNK_ID


@dataclass(frozen=True)
class TextScores:
    probs: np.ndarray  # [rows, classes], input order
    token_count: int  # tokens in all rows (before truncation to max_len)
    unknown_count: int  # of which the vocabulary does not know


class Classifier:
    """A loaded model ready to score; build once per process and reuse for every batch."""

    def __init__(
        self, bundle: ModelBundle, *, device: str = "cpu", precision: str = "fp32", batch_size: int = 1024
    ) -> None:
        if precision not in {"fp32", "bf16"}:
            raise ValueError(f"precision must be fp32 or bf16, not {precision!r}")
        self.bundle = bundle
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = batch_size
        self.model = bundle.build_model(self.device)
        if precision == "bf16" and self.device.type == "cpu":
            # Casting the weights (not autocast, which oneDNN's LSTM rejects on CPU) runs the whole
            # network in bf16; the bench checks it agrees with fp32.
            self.model = self.model.to(torch.bfloat16)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.bundle.labels

    def predict_proba_tokens(self, tokens: pa.ListArray | pa.ChunkedArray) -> np.ndarray:
        return self.predict_proba_encoded(encode_tokens(tokens, self.bundle.vocab, self.bundle.max_len))

    def predict_proba_encoded(self, encoded: EncodedTexts) -> np.ndarray:
        """Class probabilities per row, in input order.

        Each distinct id sequence is run once (see :func:`unique_rows`), in length-sorted batches
        so that little compute goes to padding.
        """
        distinct, inverse = unique_rows(encoded)
        return self._run(distinct)[inverse]

    def _run(self, encoded: EncodedTexts) -> np.ndarray:
        probs = np.empty((len(encoded), len(self.labels)), dtype=np.float32)
        cast, _ = autocast_for(self.device)
        with torch.inference_mode(), cast:
            for rows in length_sorted_batches(encoded, self.batch_size):
                ids, lengths = pad_rows(encoded, rows)
                logits = self.model(ids.to(self.device), lengths)
                probs[rows] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return probs

    def score(self, texts: pa.Array | pa.ChunkedArray | list[str]) -> TextScores:
        """Probabilities for every text, plus token statistics, doing the work once per distinct text.

        Tokenising is the costliest step after the LSTM, so texts are dictionary-encoded first and
        only the distinct ones are tokenised, encoded and scored; results are spread back by index.
        A null text scores like an empty one.
        """
        if isinstance(texts, list):
            texts = pa.array(texts, pa.string())
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        encoded = pc.dictionary_encode(pc.fill_null(texts.cast(pa.string()), ""))
        distinct, index = encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False)
        id_lists = self.bundle.vocab.encode_arrow(tokenize_arrow(distinct))
        occurrences = np.bincount(index, minlength=len(distinct))
        lengths = pc.list_value_length(id_lists).to_numpy(zero_copy_only=False)
        parents = pc.list_parent_indices(id_lists).to_numpy()
        unknown = np.bincount(parents[id_lists.flatten().to_numpy(zero_copy_only=False) == UNK_ID], minlength=len(distinct))
        probs = self.predict_proba_encoded(encode_ids(id_lists, self.bundle.max_len))
        return TextScores(probs[index], int(lengths @ occurrences), int(unknown @ occurrences))

    def predict_proba(self, texts: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
        return self.score(texts).probs

    def predict(self, texts: pa.Array | pa.ChunkedArray | list[str]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]
