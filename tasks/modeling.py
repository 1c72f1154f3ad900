"""Prefect tasks around :mod:`lstm_model`: vocabulary, training, evaluation. No storage here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import get_run_logger, task

from lstm_model.batching import encode_tokens
from lstm_model.bundle import ModelBundle
from lstm_model.evaluation import Metrics, evaluate
from lstm_model.frames import find_frame_tokens, frame_id_mask
from lstm_model.model import LSTMClassifier, ModelConfig
from lstm_model.predict import Classifier
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import EpochMetrics, TrainingConfig, seed_everything, train_classifier
from lstm_model.vocab import Vocabulary


@dataclass(frozen=True)
class TextSettings:
    min_freq: int = 1
    max_vocab: int = 20_000
    max_len: int = 64
    prefix_chars: int | None = 5
    frame_coverage: float = 0.8


@dataclass
class TrainedModel:
    bundle: ModelBundle
    history: list[EpochMetrics]
    device: str
    precision: str
    best_epoch: int
    metrics: dict[str, Metrics] = field(default_factory=dict)


def _tokens(frame: pd.DataFrame) -> pa.ListArray:
    return tokenize_arrow(pa.array(frame["comentario"].tolist(), pa.string()))


def new_version(fingerprint: str, now: datetime | None = None) -> str:
    """Sortable, unique enough for one publisher: UTC time plus the data fingerprint's first 8 hex."""
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"


@task(name="train-model")
def train_model(
    splits: dict[str, pd.DataFrame],
    labels: tuple[str, ...],
    text: TextSettings,
    model_config: dict,
    training: TrainingConfig,
    fingerprint: str,
) -> TrainedModel:
    """Build the vocabulary on the training split only, find template tokens, train, bundle."""
    logger = get_run_logger()
    train, val = splits["train"], splits["val"]
    train_tokens, val_tokens = _tokens(train), _tokens(val)
    train_lists = train_tokens.to_pylist()
    vocab = Vocabulary.build(
        train_lists, min_freq=text.min_freq, max_size=text.max_vocab, prefix_chars=text.prefix_chars
    )
    frames = find_frame_tokens(
        [vocab.normalise(t) for t in train_lists], train["categoria"].tolist(),
        min_class_coverage=text.frame_coverage,
    )
    logger.info("Vocabulary: %d entries; %d template tokens masked during training: %s", len(vocab), len(frames), frames)
    index = {label: i for i, label in enumerate(labels)}
    seed_everything(training.seed)  # the initial weights come from the seed too, not only the batch order
    model = LSTMClassifier(ModelConfig(vocab_size=len(vocab), num_classes=len(labels), **model_config))

    def progress(m: EpochMetrics) -> None:
        logger.info(
            "epoch %2d/%d  train_loss %.4f  val_loss %.4f  val_acc %.4f  val_macro_f1 %.4f  (%.2fs)",
            m.epoch, training.epochs, m.train_loss, m.val_loss, m.val_accuracy, m.val_macro_f1, m.seconds,
        )

    result = train_classifier(
        model,
        encode_tokens(train_tokens, vocab, text.max_len), train["categoria"].map(index).to_numpy(),
        encode_tokens(val_tokens, vocab, text.max_len), val["categoria"].map(index).to_numpy(),
        training, frame_mask=frame_id_mask(vocab, frames), on_epoch=progress,
    )
    logger.info(
        "Trained on %s (%s): best epoch %d of %d, %.1fs of training",
        result.device, result.precision, result.best_epoch, len(result.history), sum(h.seconds for h in result.history),
    )
    bundle = ModelBundle.from_model(
        model,
        version=new_version(fingerprint),
        vocab=vocab,
        labels=labels,
        max_len=text.max_len,
        data_fingerprint=fingerprint,
        training={
            **training.to_dict(),
            "device_used": result.device,
            "precision": result.precision,
            "best_epoch": result.best_epoch,
            "history": [vars(h) for h in result.history],
            "train_unknown_share": vocab.unknown_share(train_tokens),  # > 0 only with min_freq/max_vocab cuts
            "val_unknown_share": vocab.unknown_share(val_tokens),
        },
        splits={name: part["id"].astype(str).tolist() for name, part in splits.items()},
        frame_tokens=frames,
    )
    return TrainedModel(bundle, result.history, result.device, result.precision, result.best_epoch)


@task(name="evaluate-model")
def evaluate_model(trained: TrainedModel, datasets: dict[str, pd.DataFrame]) -> dict[str, Metrics]:
    """Score each labelled frame (test split, free-form set, ...) with the bundle as it will be served."""
    logger = get_run_logger()
    classifier = Classifier(trained.bundle)
    index = {label: i for i, label in enumerate(trained.bundle.labels)}
    results: dict[str, Metrics] = {}
    for name, frame in datasets.items():
        probs = classifier.predict_proba(pa.array(frame["comentario"].tolist(), pa.string()))
        truth = frame["categoria"].map(index).to_numpy()
        results[name] = evaluate(truth, np.asarray(probs).argmax(axis=1), trained.bundle.labels)
        logger.info("%s: accuracy %.4f, macro-F1 %.4f (%d rows)", name, results[name].accuracy, results[name].macro_f1, len(frame))
    trained.metrics.update(results)
    trained.bundle.metrics = {name: m.to_dict() for name, m in trained.metrics.items()}
    return results
