"""The whole training sequence, once: texts and labels in, a trained classifier and its report out.

tokenise -> vocabulary (training split only) -> template tokens -> encode -> seeded LSTM and
second model (character n-grams or stems; ``train_classifier`` for both) -> the ``needs_review``
threshold. The Prefect
task, the benchmarks and the tests all call :func:`fit_classifier`, so there is one way to train
and it is the one the product uses.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
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


def as_arrow_strings(texts: Sequence[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Texts as one Arrow string array (an Arrow array is used as it is, without Python strings)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts.cast(pa.string()) if texts.type != pa.string() else texts
    return pa.array(list(texts), pa.string())


def label_ids(values: Sequence[str] | pa.Array | pa.ChunkedArray, labels: Sequence[str]) -> np.ndarray:
    """The position of each label in ``labels`` (int64); a label not among them is a ValueError."""
    import pyarrow.compute as pc

    array = as_arrow_strings(values)
    ids = pc.index_in(array, value_set=pa.array(list(labels), pa.string()))
    if ids.null_count:
        unknown = sorted(set(pc.filter(array, pc.is_null(ids)).to_pylist()), key=str)
        raise ValueError(f"labels not among {list(labels)}: {unknown[:5]}")
    return ids.to_numpy(zero_copy_only=False).astype(np.int64)


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
    # Arrow all the way: the tokens of half a million texts as Python lists of strings would cost
    # gigabytes (bench/training_input_memory.py).
    train_tokens = tokenize_arrow(as_arrow_strings(train.texts))
    val_tokens = tokenize_arrow(as_arrow_strings(val.texts))
    vocab = Vocabulary.build(
        train_tokens, form=text.token_form(), min_freq=text.min_freq, max_size=text.max_vocab
    )
    frames = find_frame_tokens(
        vocab.form.keys_arrow(train_tokens), train.labels, min_class_coverage=text.frame_coverage
    )
    frame_mask = frame_id_mask(vocab, frames)
    train_ids, val_ids = (
        encode_tokens(train_tokens, vocab, text.max_len),
        encode_tokens(val_tokens, vocab, text.max_len),
    )
    train_y = label_ids(train.labels, labels)
    train_weights = train.row_weights(training.label_weight)
    val_y = label_ids(val.labels, labels)
    train_unknown = vocab.unknown_share(train_tokens)  # > 0 only with min_freq/max_vocab cuts
    val_unknown = vocab.unknown_share(val_tokens)
    second = second.resolved(has_labels=train.analyst is not None and any(train.analyst))
    if not (second.weight > 0 and second.features == "char_ngrams"):
        # Only the n-gram model reads the tokens again. Freed now and handed back by Arrow's pool, the
        # tokens and their keys (a few hundred MB for half a million texts) are not held while training.
        train_tokens = val_tokens = None
        pa.default_memory_pool().release_unused()

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
    second_model, second_result, ngrams = None, None, None
    if second.weight > 0:
        second_train: BatchableTexts = train_ids
        second_val: BatchableTexts = val_ids
        second_mask = frame_mask
        second_training = replace(
            training,
            epochs=second.epochs,
            learning_rate=second.learning_rate,
            patience=second.patience,
            seed=training.seed + SECOND_MODEL_SEED_OFFSET,
            grad_clip=None,
        )
        if second.features == "char_ngrams":
            # Masking whole template words would need word boundaries the n-grams no longer have, and
            # masking single n-grams lowered the free-form dev figure (0.78 -> 0.72): none here.
            ngrams = NgramVocabulary.build(
                train_tokens, spec=CharNgramSpec(min_n=second.ngram_min, max_n=second.ngram_max)
            )
            second_train = ngrams.encode(train_tokens, text.max_len)
            second_val = ngrams.encode(val_tokens, text.max_len)
            second_mask = None
            second_training = replace(second_training, frame_mask_prob=0.0, token_mask_prob=0.0)
        second_model = BagOfKeysClassifier(
            BagConfig(vocab_size=len(ngrams or vocab), num_classes=len(labels))
        )
        second_result = train_classifier(
            second_model,
            second_train,
            train_y,
            second_val,
            val_y,
            second_training,
            frame_mask=second_mask,
            train_weights=train_weights,
        )
    report = TrainingReport(
        settings=training,
        device=result.device,
        precision=result.precision,
        best_epoch=result.best_epoch,
        history=tuple(result.history),
        train_unknown_share=train_unknown,
        val_unknown_share=val_unknown,
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
    )
    if calibration is None or not len(calibration.texts):
        return fitted
    classifier = Classifier.from_fitted(fitted)
    cal, on_val = (
        classifier.score(as_arrow_strings(calibration.texts)),
        classifier.score(as_arrow_strings(val.texts)),
    )
    policy = fit_review_policy(
        cal.probs,
        label_ids(calibration.labels, labels),
        cal.readable,
        on_val.probs,
        on_val.readable,
        catch_target=review.catch_target,
        max_validation_flagged=review.max_validation_flagged,
        **_in_frame_cap(classifier, in_frame, review),
    )
    return replace(fitted, review=policy)


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
