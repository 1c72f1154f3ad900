"""Batch inference from a bundle: texts in, class probabilities out."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from lstm_model.batching import EncodedTexts, encode_tokens, length_sorted_batches, pad_rows
from lstm_model.bundle import ModelBundle
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import autocast_for, resolve_device


class Classifier:
    """A loaded model ready to score; build once per process and reuse for every batch."""

    def __init__(
        self, bundle: ModelBundle, *, device: str = "cpu", precision: str = "fp32", batch_size: int = 2048
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
        """Class probabilities per row, in input order; rows run in length-sorted batches."""
        probs = np.empty((len(encoded), len(self.labels)), dtype=np.float32)
        cast, _ = autocast_for(self.device)
        with torch.inference_mode(), cast:
            for rows in length_sorted_batches(encoded, self.batch_size):
                ids, lengths = pad_rows(encoded, rows)
                logits = self.model(ids.to(self.device), lengths)
                probs[rows] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return probs

    def predict_proba(self, texts: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
        if isinstance(texts, list):
            texts = pa.array(texts, pa.string())
        return self.predict_proba_tokens(tokenize_arrow(texts))

    def predict(self, texts: pa.Array | pa.ChunkedArray | list[str]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]
