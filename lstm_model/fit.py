"""The whole training sequence, once: texts and labels in, a trained classifier and its report out.

tokenise -> vocabulary (training split only) -> template tokens -> encode -> seeded LSTM ->
``train_classifier``. The Prefect task, the benchmarks and the tests all call :func:`fit_classifier`,
so there is one way to train and it is the one the product uses.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from typing import Any

import numpy as np
import pyarrow as pa

from lstm_model.batching import encode_tokens
from lstm_model.frames import find_frame_tokens
from lstm_model.frames import frame_id_mask
from lstm_model.model import LSTMClassifier
from lstm_model.model import ModelConfig
from lstm_model.settings import ArchitectureSettings
from lstm_model.settings import TextSettings
from lstm_model.settings import TrainingSettings
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import EpochMetrics
from lstm_model.training import seed_everything
from lstm_model.training import train_classifier
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

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.settings.to_dict(),
            "device_used": self.device,
            "precision": self.precision,
            "best_epoch": self.best_epoch,
            "history": [asdict(h) for h in self.history],
            "train_unknown_share": self.train_unknown_share,
            "val_unknown_share": self.val_unknown_share,
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
        )


@dataclass(frozen=True)
class FittedModel:
    """A trained network with the vocabulary and labels it reads and writes."""

    model: LSTMClassifier
    vocab: Vocabulary
    labels: tuple[str, ...]
    max_len: int
    frame_tokens: tuple[str, ...]
    report: TrainingReport


def fit_classifier(
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    val_texts: Sequence[str],
    val_labels: Sequence[str],
    labels: Sequence[str],
    *,
    text: TextSettings = TextSettings(),
    architecture: ArchitectureSettings = ArchitectureSettings(),
    training: TrainingSettings = TrainingSettings(),
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> FittedModel:
    """Build the vocabulary on the training texts only, find template tokens, train, return the best epoch.

    ``labels`` fixes the class order (the model's output columns); every value of ``train_labels``
    and ``val_labels`` must be one of them.
    """
    labels = tuple(labels)
    index = {label: i for i, label in enumerate(labels)}
    train_tokens = tokenize_arrow(pa.array(list(train_texts), pa.string()))
    val_tokens = tokenize_arrow(pa.array(list(val_texts), pa.string()))
    train_lists = train_tokens.to_pylist()
    vocab = Vocabulary.build(
        train_lists, min_freq=text.min_freq, max_size=text.max_vocab, prefix_chars=text.prefix_chars
    )
    frames = find_frame_tokens(
        [vocab.normalise(t) for t in train_lists], list(train_labels), min_class_coverage=text.frame_coverage
    )
    seed_everything(training.seed)  # the initial weights come from the seed too, not only the batch order
    model = LSTMClassifier(ModelConfig.for_data(architecture, vocab_size=len(vocab), num_classes=len(labels)))
    result = train_classifier(
        model,
        encode_tokens(train_tokens, vocab, text.max_len),
        np.array([index[label] for label in train_labels], dtype=np.int64),
        encode_tokens(val_tokens, vocab, text.max_len),
        np.array([index[label] for label in val_labels], dtype=np.int64),
        training,
        frame_mask=frame_id_mask(vocab, frames),
        on_epoch=on_epoch,
    )
    report = TrainingReport(
        settings=training,
        device=result.device,
        precision=result.precision,
        best_epoch=result.best_epoch,
        history=tuple(result.history),
        train_unknown_share=vocab.unknown_share(train_tokens),  # > 0 only with min_freq/max_vocab cuts
        val_unknown_share=vocab.unknown_share(val_tokens),
    )
    return FittedModel(model, vocab, labels, text.max_len, tuple(frames), report)
