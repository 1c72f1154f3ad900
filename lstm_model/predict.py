"""Batch inference: texts in, class probabilities and review flags out, each distinct text scored once."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from lstm_model.batching import BatchableTexts
from lstm_model.batching import encode_ids
from lstm_model.batching import length_sorted_batches
from lstm_model.batching import unique_rows
from lstm_model.bundle import ModelBundle
from lstm_model.char_ngrams import NgramVocabulary
from lstm_model.results import FittedModel
from lstm_model.review import ReviewPolicy
from lstm_model.review import has_readable_word
from lstm_model.review import reason_texts
from lstm_model.subwords import SubwordTexts
from lstm_model.subwords import SubwordVocabulary
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import resolve_device
from lstm_model.vocab import UNK_ID
from lstm_model.vocab import Vocabulary


@dataclass(frozen=True)
class TextScores:
    probs: np.ndarray  # [rows, classes], input order; uniform for a row with no readable word
    readable: np.ndarray  # bool: the text has a word (a token with a letter)
    known: np.ndarray  # bool: at least one of its tokens is in the vocabulary
    needs_review: np.ndarray  # bool
    review_reason: pa.Array  # string, null where the row is not flagged
    token_count: int  # tokens in all rows (before truncation to max_len)
    unknown_count: int  # of which the vocabulary does not know

    @property
    def predicted(self) -> np.ndarray:
        """Index of the predicted class, -1 where the text has no readable word (no class given)."""
        return np.where(self.readable, self.probs.argmax(axis=1), -1) if len(self.probs) else np.zeros(0, int)


class Classifier:
    """The trained networks with their vocabulary and review rule; build once per process and reuse.

    With a second model, the probabilities are ``(1 - w) * LSTM + w * second``. The second model
    reads character n-grams when ``ngrams`` is given, else the LSTM's token ids. A stems model beside
    an n-gram one (second-model features ``both``) adds its share ``s``:
    ``(1 - w - s) * LSTM + w * n-grams + s * stems``.
    """

    def __init__(
        self,
        model: nn.Module,
        vocab: Vocabulary,
        labels: tuple[str, ...],
        max_len: int,
        *,
        second_model: nn.Module | None = None,
        second_model_weight: float = 0.0,
        ngrams: NgramVocabulary | None = None,
        stems_model: nn.Module | None = None,
        stems_weight: float = 0.0,
        subwords: SubwordVocabulary | None = None,
        review: ReviewPolicy = ReviewPolicy(min_confidence=None),
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 1024,
    ) -> None:
        if precision not in {"fp32", "bf16", "fp16"}:
            raise ValueError(f"precision must be fp32, bf16 or fp16, not {precision!r}")
        self.vocab = vocab
        self.subwords = subwords  # what a subword LSTM reads; None: it reads ``vocab``'s stems
        self.labels = tuple(labels)
        self.max_len = max_len
        self.review = review
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = batch_size
        self.lstm = model.to(self.device).eval()
        self.second = None
        self.second_weight = 0.0
        self.ngrams = ngrams
        if second_model is not None and second_model_weight > 0:
            self.second = second_model.to(self.device).eval()
            self.second_weight = second_model_weight
        self.stems = None
        self.stems_weight = 0.0
        if stems_model is not None and stems_weight > 0 and ngrams is not None:
            self.stems = stems_model.to(self.device).eval()
            self.stems_weight = stems_weight
        if self.device.type == "cpu" and precision != "fp32":
            if precision != "bf16":
                raise ValueError("on the CPU, precision must be fp32 or bf16")
            # Casting the weights (not autocast, which oneDNN's LSTM rejects on CPU) runs the whole
            # LSTM in bf16 (see lstm_model/precision.py for when that pays off). The second model stays
            # fp32: it is a mean over hundreds of n-gram weights, cheap, and bf16 would round the sum.
            self.lstm = self.lstm.to(torch.bfloat16)

    @classmethod
    def from_bundle(cls, bundle: ModelBundle, **options: Any) -> Classifier:
        return cls._from_parts(
            bundle.build_model(),
            bundle.build_second_model(),
            bundle,
            stems_model=bundle.build_stems_model(),
            **options,
        )

    @classmethod
    def from_fitted(cls, fitted: FittedModel, **options: Any) -> Classifier:
        """The just-trained models, scored exactly as they will be once bundled and loaded."""
        return cls._from_parts(
            fitted.model, fitted.second_model, fitted, stems_model=fitted.stems_model, **options
        )

    @classmethod
    def _from_parts(
        cls,
        model: nn.Module,
        second_model: nn.Module | None,
        parts: ModelBundle | FittedModel,
        **options: Any,
    ) -> Classifier:
        """The one mapping from what a bundle and a fitted model share to a classifier."""
        return cls(
            model,
            parts.vocab,
            parts.labels,
            parts.max_len,
            second_model=second_model,
            second_model_weight=parts.second_model_weight,
            ngrams=parts.ngrams,
            stems_weight=parts.stems_weight,
            subwords=parts.subwords,
            review=parts.review,
            **options,
        )

    def _predict(
        self, tokens: pa.ListArray, id_lists: pa.ListArray, subword_texts: SubwordTexts | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(averaged probabilities, models disagree) per row of ``tokens`` (distinct texts).

        A stems LSTM runs once per distinct id sequence (see :func:`unique_rows`): texts that differ
        only in case, punctuation or stop words share one. A subword LSTM (``subword_texts``) and the
        n-gram model read the words themselves.
        """
        distinct, inverse = unique_rows(encode_ids(id_lists, self.max_len))
        if subword_texts is not None:
            lstm = self._run(self.lstm, subword_texts, cast=True)
        else:
            lstm = self._run(self.lstm, distinct, cast=True)[inverse]
        if self.second is None:
            return lstm, np.zeros(len(lstm), dtype=bool)
        if self.ngrams is not None:
            second = self._run(self.second, self.ngrams.encode(tokens, self.max_len), cast=False)
        else:
            second = self._run(self.second, distinct, cast=False)[inverse]
        if self.stems is not None:
            stems = self._run(self.stems, distinct, cast=False)[inverse]
            bags = self.second_weight + self.stems_weight
            second = (self.second_weight * second + self.stems_weight * stems) / bags
            averaged = (1.0 - bags) * lstm + bags * second
        else:
            averaged = (1.0 - self.second_weight) * lstm + self.second_weight * second
        return averaged, lstm.argmax(axis=1) != second.argmax(axis=1)

    def _cast(self) -> contextlib.AbstractContextManager:
        """Mixed precision on CUDA (autocast to bf16 or fp16); on the CPU the weights are cast instead."""
        if self.device.type != "cuda" or self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def _run(self, model: nn.Module, encoded: BatchableTexts, *, cast: bool) -> np.ndarray:
        """Softmax probabilities of one model, in input order (length-sorted batches: little padding)."""
        probs = np.empty((len(encoded), len(self.labels)), dtype=np.float32)
        with torch.inference_mode(), self._cast() if cast else contextlib.nullcontext():
            for rows in length_sorted_batches(encoded, self.batch_size):
                ids, lengths = encoded.pad(rows)
                probs[rows] = torch.softmax(model(ids.to(self.device), lengths).float(), dim=1).cpu().numpy()
        return probs

    def score(self, texts: pa.Array | pa.ChunkedArray | list[str]) -> TextScores:
        """Probabilities, review flags and token statistics for every text, doing the work once per
        distinct text.

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
        tokens = tokenize_arrow(distinct)
        readable = has_readable_word(tokens)
        id_lists = self.vocab.encode_arrow(tokens)
        flat_ids = id_lists.flatten().to_numpy(zero_copy_only=False)
        parents = pc.list_parent_indices(id_lists).to_numpy()
        occurrences = np.bincount(index, minlength=len(distinct))
        lengths = pc.list_value_length(id_lists).to_numpy(zero_copy_only=False)
        unknown = np.bincount(parents[flat_ids == UNK_ID], minlength=len(distinct))
        known = np.bincount(parents[flat_ids != UNK_ID], minlength=len(distinct)) > 0
        subword_texts = self.subwords.encode(tokens, self.max_len) if self.subwords is not None else None
        if subword_texts is not None:
            # A word the vocabulary lacks ("paqute", "xq") still reads as its known n-grams.
            known |= subword_texts.reads_a_known_word()
        probs, disagree = self._predict(tokens, id_lists, subword_texts)
        probs[~readable] = 1.0 / len(self.labels)  # no words: no class, not a confident guess
        flagged, code = self.review.flag_codes(probs, readable, known, disagree)
        return TextScores(
            probs=probs[index],
            readable=readable[index],
            known=known[index],
            needs_review=flagged[index],
            review_reason=reason_texts(flagged[index], code[index]),
            token_count=int(lengths @ occurrences),
            unknown_count=int(unknown @ occurrences),
        )

    def predict_proba(self, texts: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
        return self.score(texts).probs
