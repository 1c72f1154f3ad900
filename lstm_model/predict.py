"""Batch inference: texts in, class probabilities out, each distinct text scored once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lstm_model.batching import EncodedTexts
from lstm_model.batching import encode_ids
from lstm_model.batching import length_sorted_batches
from lstm_model.batching import pad_rows
from lstm_model.batching import unique_rows
from lstm_model.bundle import ModelBundle
from lstm_model.fit import FittedModel
from lstm_model.model import LSTMClassifier
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import autocast_for
from lstm_model.training import resolve_device
from lstm_model.vocab import UNK_ID
from lstm_model.vocab import Vocabulary


@dataclass(frozen=True)
class TextScores:
    probs: np.ndarray  # [rows, classes], input order
    token_count: int  # tokens in all rows (before truncation to max_len)
    unknown_count: int  # of which the vocabulary does not know


class Classifier:
    """A trained network with its vocabulary, ready to score; build once per process and reuse."""

    def __init__(
        self,
        model: LSTMClassifier,
        vocab: Vocabulary,
        labels: tuple[str, ...],
        max_len: int,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 1024,
    ) -> None:
        if precision not in {"fp32", "bf16"}:
            raise ValueError(f"precision must be fp32 or bf16, not {precision!r}")
        self.vocab = vocab
        self.labels = tuple(labels)
        self.max_len = max_len
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = batch_size
        self.model = model.to(self.device).eval()
        if precision == "bf16" and self.device.type == "cpu":
            # Casting the weights (not autocast, which oneDNN's LSTM rejects on CPU) runs the whole
            # network in bf16; the bench checks it agrees with fp32.
            self.model = self.model.to(torch.bfloat16)

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, **options: Any) -> Classifier:
        return cls(bundle.build_model(), bundle.vocab, bundle.labels, bundle.max_len, **options)

    @classmethod
    def from_fitted(cls, fitted: FittedModel, **options: Any) -> Classifier:
        """The just-trained model, scored exactly as it will be once bundled and loaded."""
        return cls(fitted.model, fitted.vocab, fitted.labels, fitted.max_len, **options)

    def _predict_encoded(self, encoded: EncodedTexts) -> np.ndarray:
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
        id_lists = self.vocab.encode_arrow(tokenize_arrow(distinct))
        occurrences = np.bincount(index, minlength=len(distinct))
        lengths = pc.list_value_length(id_lists).to_numpy(zero_copy_only=False)
        parents = pc.list_parent_indices(id_lists).to_numpy()
        unknown = np.bincount(
            parents[id_lists.flatten().to_numpy(zero_copy_only=False) == UNK_ID], minlength=len(distinct)
        )
        probs = self._predict_encoded(encode_ids(id_lists, self.max_len))
        return TextScores(probs[index], int(lengths @ occurrences), int(unknown @ occurrences))

    def predict_proba(self, texts: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
        return self.score(texts).probs
