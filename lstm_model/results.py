"""What training takes and gives back: labelled texts in; the fitted networks and how they were trained out.

A leaf module (it imports no other module that imports it), so the training sequence
(:mod:`lstm_model.fit`), scoring (:mod:`lstm_model.predict`) and the bundle's files
(:mod:`lstm_model.bundle`) all share these types without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from dataclasses import replace
from typing import Any

import numpy as np

from lstm_model.bag_model import BagOfKeysClassifier
from lstm_model.char_ngrams import NgramVocabulary
from lstm_model.model import LSTMClassifier
from lstm_model.review import ReviewPolicy
from lstm_model.settings import TrainingSettings
from lstm_model.subwords import SubwordVocabulary
from lstm_model.training import EpochMetrics
from lstm_model.vocab import Vocabulary


@dataclass(frozen=True)
class TrainingReport:
    """How a model was trained, as stored in its bundle (``bundle.json`` -> ``training``)."""

    settings: TrainingSettings
    device: str
    precision: str
    best_epoch: int
    history: tuple[EpochMetrics, ...]
    # Share of tokens the vocabulary does not know, on the training and validation splits: the
    # scoring reports compare each batch's share with the validation one (new words = drift).
    train_unknown_share: float | None = None
    val_unknown_share: float | None = None
    second_model_best_epoch: int | None = None
    second_model_epochs: int | None = None
    phrase_rows: int = 0  # domain-phrase rows added to the training texts (0: none, or an older bundle)
    augmented_rows: int = 0  # phrases in carrier sentences with noise (subword LSTM only)
    unlabelled_rows: int = 0  # scored comments learnt from the bag models' reading (subword LSTM only)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.settings.to_dict(),
            "device_used": self.device,
            "precision": self.precision,
            "best_epoch": self.best_epoch,
            "history": [asdict(h) for h in self.history],
            "train_unknown_share": self.train_unknown_share,
            "val_unknown_share": self.val_unknown_share,
            "second_model_best_epoch": self.second_model_best_epoch,
            "second_model_epochs": self.second_model_epochs,
            "phrase_rows": self.phrase_rows,
            "augmented_rows": self.augmented_rows,
            "unlabelled_rows": self.unlabelled_rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingReport:
        epoch_fields = {f.name for f in fields(EpochMetrics)}
        return cls(
            settings=TrainingSettings.from_dict(data),
            device=data.get("device_used", "cpu"),
            precision=data.get("precision", "fp32"),
            best_epoch=data.get("best_epoch", 0),
            history=tuple(
                EpochMetrics(**{k: v for k, v in h.items() if k in epoch_fields})
                for h in data.get("history", [])
            ),
            train_unknown_share=data.get("train_unknown_share"),
            val_unknown_share=data.get("val_unknown_share"),
            second_model_best_epoch=data.get("second_model_best_epoch"),
            second_model_epochs=data.get("second_model_epochs"),
            phrase_rows=data.get("phrase_rows", 0),
            augmented_rows=data.get("augmented_rows", 0),
            unlabelled_rows=data.get("unlabelled_rows", 0),
        )


@dataclass(frozen=True)
class FittedModel:
    """Trained networks with the vocabulary and labels they read and write, and the review rule."""

    model: LSTMClassifier
    second_model: BagOfKeysClassifier | None
    second_model_weight: float
    vocab: Vocabulary
    labels: tuple[str, ...]
    max_len: int
    frame_tokens: tuple[str, ...]
    review: ReviewPolicy
    report: TrainingReport
    # The second model's n-gram vocabulary; None: it reads the LSTM's vocabulary (stems) or is absent.
    ngrams: NgramVocabulary | None = None
    # With second-model features ``both``: the stems model beside the n-gram one, and its share.
    stems_model: BagOfKeysClassifier | None = None
    stems_weight: float = 0.0
    # What a subword LSTM reads (its character n-grams); None: it reads ``vocab``'s stems.
    subwords: SubwordVocabulary | None = None

    def lstm_alone(self) -> FittedModel:
        """The same version scoring with its LSTM only (how its evaluation and tests judge the LSTM)."""
        return replace(self, second_model=None, second_model_weight=0.0, stems_model=None, stems_weight=0.0)


@dataclass(frozen=True)
class LabelledTexts:
    texts: Sequence[str]
    labels: Sequence[str]
    # True for rows an analyst labelled (the feedback loop); in the training texts their loss counts
    # ``TrainingSettings.label_weight`` times a source row's. None: no such rows.
    analyst: Sequence[bool] | None = None

    def row_weights(self, label_weight: float) -> np.ndarray | None:
        """Per-row loss weights for :func:`~lstm_model.training.train_classifier` (None: all equal)."""
        if self.analyst is None or label_weight == 1.0:
            return None
        return np.where(np.asarray(self.analyst, dtype=bool), label_weight, 1.0).astype(np.float32)
