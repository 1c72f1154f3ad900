"""The whole training sequence, once: texts and labels in, a trained classifier and its report out.

tokenise -> vocabulary (training split only) -> template tokens -> encode -> seeded LSTM and
bag model(s) (character n-grams, stems, or both; ``train_classifier`` for all) -> the ``needs_review``
threshold. The Prefect task, the benchmarks and the tests all call :func:`fit_classifier`, so there is one way to train
and it is the one the product uses.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from lstm_model.bag_model import BagConfig
from lstm_model.bag_model import BagOfKeysClassifier
from lstm_model.batching import BatchableTexts
from lstm_model.batching import encode_tokens
from lstm_model.char_ngrams import CharNgramSpec
from lstm_model.char_ngrams import NgramVocabulary
from lstm_model.frames import find_frame_tokens
from lstm_model.frames import frame_id_mask
from lstm_model.model import LSTMClassifier
from lstm_model.model import ModelConfig
from lstm_model.predict import Classifier
from lstm_model.results import FittedModel
from lstm_model.results import LabelledTexts
from lstm_model.results import TrainingReport
from lstm_model.review import ReviewPolicy
from lstm_model.review import fit_review_policy
from lstm_model.settings import ArchitectureSettings
from lstm_model.settings import ReviewSettings
from lstm_model.settings import SecondModelSettings
from lstm_model.settings import TextSettings
from lstm_model.settings import TrainingSettings
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import EpochMetrics
from lstm_model.training import seed_everything
from lstm_model.training import train_classifier
from lstm_model.vocab import Vocabulary

SECOND_MODEL_SEED_OFFSET = 1000  # its masking draws differ from the LSTM's


def fit_classifier(
    train: LabelledTexts,
    val: LabelledTexts,
    labels: Sequence[str],
    *,
    calibration: LabelledTexts | None = None,
    in_frame: LabelledTexts | None = None,
    text: TextSettings = TextSettings(),
    architecture: ArchitectureSettings = ArchitectureSettings(),
    training: TrainingSettings = TrainingSettings(),
    second: SecondModelSettings = SecondModelSettings(),
    review: ReviewSettings = ReviewSettings(),
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> FittedModel:
    """Build the vocabulary on the training texts only, find template tokens, train both models.

    ``labels`` fixes the class order (the models' output columns); every label of the texts must
    be one of them. ``calibration`` (hand-written free-form comments the models never train on)
    fixes the ``needs_review`` threshold; without it, no confidence threshold is fitted. ``in_frame``
    (template comments with new wording) caps how many good comments that threshold may flag.
    """
    labels = tuple(labels)
    index = {label: i for i, label in enumerate(labels)}
    train_tokens = tokenize_arrow(pa.array(list(train.texts), pa.string()))
    val_tokens = tokenize_arrow(pa.array(list(val.texts), pa.string()))
    vocab = Vocabulary.build(
        train_tokens.to_pylist(), form=text.token_form(), min_freq=text.min_freq, max_size=text.max_vocab
    )
    frames = find_frame_tokens(
        vocab.form.keys_arrow(train_tokens).to_pylist(),
        list(train.labels),
        min_class_coverage=text.frame_coverage,
    )
    frame_mask = frame_id_mask(vocab, frames)
    train_ids, val_ids = (
        encode_tokens(train_tokens, vocab, text.max_len),
        encode_tokens(val_tokens, vocab, text.max_len),
    )
    train_y = np.array([index[label] for label in train.labels], dtype=np.int64)
    train_weights = train.row_weights(training.label_weight)
    val_y = np.array([index[label] for label in val.labels], dtype=np.int64)

    seed_everything(training.seed)  # the initial weights come from the seed too, not only the batch order
    model = LSTMClassifier(ModelConfig.for_data(architecture, vocab_size=len(vocab), num_classes=len(labels)))
    result = train_classifier(
        model,
        train_ids,
        train_y,
        val_ids,
        val_y,
        training,
        frame_mask=frame_mask,
        train_weights=train_weights,
        on_epoch=on_epoch,
    )
    second = second.resolved(has_labels=train.analyst is not None and any(train.analyst))
    bag = _BagInputs(train_tokens, val_tokens, train_ids, val_ids, train_y, val_y, train_weights, frame_mask)
    second_model, second_result, ngrams = None, None, None
    stems_model, stems_weight = None, 0.0
    if second.weight > 0:
        second_model, second_result, ngrams = _train_bag(
            second, bag, vocab, labels, text, training, ngrams=second.features != "stems"
        )
    if second.features == "both" and second.stems_weight > 0:
        stems_model, _, _ = _train_bag(second.stems_part(), bag, vocab, labels, text, training, ngrams=False)
        stems_weight = second.stems_weight
    report = TrainingReport(
        settings=training,
        device=result.device,
        precision=result.precision,
        best_epoch=result.best_epoch,
        history=tuple(result.history),
        train_unknown_share=vocab.unknown_share(train_tokens),  # > 0 only with min_freq/max_vocab cuts
        val_unknown_share=vocab.unknown_share(val_tokens),
        second_model_best_epoch=second_result.best_epoch if second_result else None,
        second_model_epochs=len(second_result.history) if second_result else None,
    )
    fitted = FittedModel(
        model,
        second_model,
        second.weight,
        vocab,
        labels,
        text.max_len,
        tuple(frames),
        ReviewPolicy(min_confidence=None),
        report,
        ngrams,
        stems_model,
        stems_weight,
    )
    if calibration is None or not len(calibration.texts):
        return fitted
    classifier = Classifier.from_fitted(fitted)
    cal, on_val = classifier.score(list(calibration.texts)), classifier.score(list(val.texts))
    policy = fit_review_policy(
        cal.probs,
        np.array([index[label] for label in calibration.labels]),
        cal.readable,
        on_val.probs,
        on_val.readable,
        catch_target=review.catch_target,
        max_validation_flagged=review.max_validation_flagged,
        **_in_frame_cap(classifier, in_frame, review),
    )
    return replace(fitted, review=policy)


@dataclass(frozen=True)
class _BagInputs:
    """What both bag models train on: tokens (for n-grams), LSTM ids (for stems), targets, weights."""

    train_tokens: pa.ListArray
    val_tokens: pa.ListArray
    train_ids: BatchableTexts
    val_ids: BatchableTexts
    train_y: np.ndarray
    val_y: np.ndarray
    train_weights: np.ndarray | None
    frame_mask: Any


def _train_bag(
    settings: SecondModelSettings,
    data: _BagInputs,
    vocab: Vocabulary,
    labels: tuple[str, ...],
    text: TextSettings,
    training: TrainingSettings,
    *,
    ngrams: bool,
) -> tuple[BagOfKeysClassifier, Any, NgramVocabulary | None]:
    """One bag-of-features model (character n-grams, or the LSTM's stems with its masking), trained."""
    second_train: BatchableTexts = data.train_ids
    second_val: BatchableTexts = data.val_ids
    second_mask = data.frame_mask
    second_training = replace(
        training,
        epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        patience=settings.patience,
        seed=training.seed + SECOND_MODEL_SEED_OFFSET,
        grad_clip=None,
    )
    grams = None
    if ngrams:
        # Masking whole template words would need word boundaries the n-grams no longer have, and
        # masking single n-grams lowered the free-form dev figure (0.78 -> 0.72): none here.
        grams = NgramVocabulary.build(
            data.train_tokens, spec=CharNgramSpec(min_n=settings.ngram_min, max_n=settings.ngram_max)
        )
        second_train = grams.encode(data.train_tokens, text.max_len)
        second_val = grams.encode(data.val_tokens, text.max_len)
        second_mask = None
        second_training = replace(second_training, frame_mask_prob=0.0, token_mask_prob=0.0)
    model = BagOfKeysClassifier(BagConfig(vocab_size=len(grams or vocab), num_classes=len(labels)))
    result = train_classifier(
        model,
        second_train,
        data.train_y,
        second_val,
        data.val_y,
        second_training,
        frame_mask=second_mask,
        train_weights=data.train_weights,
    )
    return model, result, grams


def _in_frame_cap(classifier: Any, in_frame: LabelledTexts | None, review: ReviewSettings) -> dict[str, Any]:
    """The in-frame rows' arguments of :func:`fit_review_policy` (none without such rows)."""
    if in_frame is None or not len(in_frame.texts):
        return {}
    scores = classifier.score(list(in_frame.texts))
    return {
        "in_frame_probs": scores.probs,
        "in_frame_readable": scores.readable,
        "max_in_frame_flagged": review.max_in_frame_flagged,
    }
