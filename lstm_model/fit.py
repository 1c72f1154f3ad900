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

from lstm_model.augment import augmented_texts
from lstm_model.bag_model import BagConfig
from lstm_model.bag_model import BagOfKeysClassifier
from lstm_model.batching import BatchableTexts
from lstm_model.batching import encode_tokens
from lstm_model.char_ngrams import CharNgramSpec
from lstm_model.char_ngrams import NgramVocabulary
from lstm_model.frames import find_frame_tokens
from lstm_model.frames import frame_id_mask
from lstm_model.memory import release_freed_memory
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
from lstm_model.subwords import SubwordVocabulary
from lstm_model.token_form import TokenForm
from lstm_model.tokenizer import tokenize_arrow
from lstm_model.training import EpochMetrics
from lstm_model.training import predict_logits
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
    phrases: LabelledTexts | None = None,
    unlabelled: Sequence[str] | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> FittedModel:
    """Build the vocabulary on the training texts only, find template tokens, train the LSTM and the bag
    models beside it, then fit the ``needs_review`` threshold.

    ``labels`` fixes the class order (the models' output columns); every label of the texts must
    be one of them. ``calibration`` (hand-written free-form comments the models never train on)
    fixes the ``needs_review`` threshold; without it, no confidence threshold is fitted. ``in_frame``
    (template comments with new wording) caps how many good comments that threshold may flag.
    ``phrases`` (short phrases that name each class's subject: the domain's words, which a templated
    source lacks) are added to the training texts, repeated to ``training.phrase_share`` of them.
    ``unlabelled`` (comments the pipeline has scored: real customers' wording, no label) teach the
    subword LSTM the bag models' reading of them, at loss weight ``training.self_train_weight``; a stems
    LSTM, or a version without bag models, does not use them.
    """
    labels = tuple(labels)
    second = second.resolved(has_labels=train.analyst is not None and any(train.analyst))
    subwords = architecture.token_input == "subwords"
    encoded = _encode(
        train,
        val,
        labels,
        text,
        training,
        keep_tokens=subwords or (second.weight > 0 and second.features != "stems"),
        phrases=phrases,
    )
    # The bag models first: a subword LSTM learns from their reading of the augmented texts.
    second_model, second_result, ngrams = None, None, None
    stems_model, stems_weight = None, 0.0
    if second.weight > 0:
        second_model, second_result, ngrams = _train_bag(
            second, encoded.bag, encoded.vocab, labels, text, training, ngrams=second.features != "stems"
        )
    if second.features == "both" and second.stems_weight > 0:
        stems_model, _, _ = _train_bag(
            second.stems_part(), encoded.bag, encoded.vocab, labels, text, training, ngrams=False
        )
        stems_weight = second.stems_weight
    teacher = _Teacher(second_model, second.weight, ngrams, stems_model, stems_weight, encoded.vocab, text)

    seed_everything(training.seed)  # the initial weights come from the seed too, not only the batch order
    lstm_vocab = None
    if subwords:
        lstm = _subword_inputs(
            train, phrases, unlabelled, encoded, labels, text, architecture, training, teacher
        )
        lstm_vocab = lstm.vocab
        model = LSTMClassifier(
            ModelConfig.for_data(architecture, vocab_size=len(lstm.vocab), num_classes=len(labels))
        )
        result = train_classifier(
            model,
            lstm.train,
            lstm.targets.argmax(axis=1),
            lstm.val,
            encoded.bag.val_y,
            training,
            train_weights=lstm.weights,
            train_targets=lstm.targets,
            on_epoch=on_epoch,
        )
    else:
        model = LSTMClassifier(
            ModelConfig.for_data(architecture, vocab_size=len(encoded.vocab), num_classes=len(labels))
        )
        result = train_classifier(
            model,
            encoded.bag.train_ids,
            encoded.bag.train_y,
            encoded.bag.val_ids,
            encoded.bag.val_y,
            training,
            frame_mask=encoded.bag.frame_mask,
            train_weights=encoded.bag.train_weights,
            on_epoch=on_epoch,
        )
    report = TrainingReport(
        settings=training,
        device=result.device,
        precision=result.precision,
        best_epoch=result.best_epoch,
        history=tuple(result.history),
        train_unknown_share=encoded.train_unknown,
        val_unknown_share=encoded.val_unknown,
        second_model_best_epoch=second_result.best_epoch if second_result else None,
        second_model_epochs=len(second_result.history) if second_result else None,
        phrase_rows=encoded.phrase_rows,
        augmented_rows=lstm.augmented_rows if subwords else 0,
        unlabelled_rows=lstm.unlabelled_rows if subwords else 0,
    )
    fitted = FittedModel(
        model,
        second_model,
        second.weight,
        encoded.vocab,
        labels,
        text.max_len,
        encoded.frames,
        ReviewPolicy(min_confidence=None),
        report,
        ngrams,
        stems_model,
        stems_weight,
        lstm_vocab,
    )
    if calibration is None or not len(calibration.texts):
        return fitted
    return replace(fitted, review=_fit_review(fitted, calibration, val, in_frame, review))


def phrase_copies(source_rows: int, phrases: int, share: float) -> int:
    """How many times each domain phrase is added to the training texts: enough for the phrases to be
    ``share`` of them, and at least once (a small source would otherwise get only some of them)."""
    if not phrases or share <= 0:
        return 0
    return max(1, round(share / (1 - share) * source_rows / phrases))


@dataclass(frozen=True)
class _BagInputs:
    """What both bag models train on: tokens (for n-grams), LSTM ids (for stems), targets, weights."""

    train_tokens: pa.ListArray | None  # None once freed: only the n-gram model reads them
    val_tokens: pa.ListArray | None
    train_ids: BatchableTexts
    val_ids: BatchableTexts
    train_y: np.ndarray
    val_y: np.ndarray
    train_weights: np.ndarray | None
    frame_mask: Any


@dataclass(frozen=True)
class _Encoded:
    """The training and validation texts as the models read them, with the vocabulary they were read by."""

    vocab: Vocabulary
    frames: tuple[str, ...]
    bag: _BagInputs  # ids, targets, weights and template mask (tokens too when the n-gram model needs them)
    train_unknown: float
    val_unknown: float
    phrase_rows: int = 0


def _encode(
    train: LabelledTexts,
    val: LabelledTexts,
    labels: tuple[str, ...],
    text: TextSettings,
    training: TrainingSettings,
    *,
    keep_tokens: bool,
    phrases: LabelledTexts | None = None,
) -> _Encoded:
    """Tokenise, build the vocabulary on the training texts (and phrases) only, find template tokens
    (in the training texts), encode both splits."""
    # Arrow all the way: the tokens of half a million texts as Python lists of strings would cost
    # gigabytes (bench/training_input_memory.py).
    source_tokens = tokenize_arrow(as_arrow_strings(train.texts))
    val_tokens = tokenize_arrow(as_arrow_strings(val.texts))
    copies = phrase_copies(len(train.texts), len(phrases.texts) if phrases else 0, training.phrase_share)
    train_tokens, train_y = source_tokens, label_ids(train.labels, labels)
    weights = train.row_weights(training.label_weight)
    if copies:
        repeat = np.tile(np.arange(len(phrases.texts)), copies)
        train_tokens = pa.concat_arrays(
            [source_tokens, tokenize_arrow(as_arrow_strings(phrases.texts)).take(pa.array(repeat))]
        )
        train_y = np.concatenate([train_y, label_ids(phrases.labels, labels)[repeat]])
        if weights is not None:
            weights = np.concatenate([weights, np.ones(len(repeat), dtype=weights.dtype)])
    vocab = Vocabulary.build(
        train_tokens, form=text.token_form(), min_freq=text.min_freq, max_size=text.max_vocab
    )
    # Template words are those of the source's classes: the phrases would only dilute them.
    frames = find_frame_tokens(
        vocab.form.keys_arrow(source_tokens), train.labels, min_class_coverage=text.frame_coverage
    )
    del source_tokens
    bag = _BagInputs(
        train_tokens,
        val_tokens,
        encode_tokens(train_tokens, vocab, text.max_len),
        encode_tokens(val_tokens, vocab, text.max_len),
        train_y,
        label_ids(val.labels, labels),
        weights,
        frame_id_mask(vocab, frames),
    )
    train_unknown = vocab.unknown_share(train_tokens)  # > 0 only with min_freq/max_vocab cuts
    val_unknown = vocab.unknown_share(val_tokens)
    if not keep_tokens:
        # Only the n-gram model reads the tokens again: not held while training.
        del train_tokens, val_tokens
        bag = replace(bag, train_tokens=None, val_tokens=None)
    # Tokenising half a million texts leaves ~300 MB of freed pages in Arrow's pool (mimalloc keeps
    # them): handed back before the models allocate their own.
    release_freed_memory()
    return _Encoded(
        vocab, tuple(frames), bag, train_unknown, val_unknown, copies * len(phrases.texts) if copies else 0
    )


def _fit_review(
    fitted: FittedModel,
    calibration: LabelledTexts,
    val: LabelledTexts,
    in_frame: LabelledTexts | None,
    review: ReviewSettings,
) -> ReviewPolicy:
    """The ``needs_review`` threshold: catch the wrong calibration predictions, capped by how many
    validation and in-frame rows it may flag."""
    classifier = Classifier.from_fitted(fitted)
    cal = classifier.score(as_arrow_strings(calibration.texts))
    on_val = classifier.score(as_arrow_strings(val.texts))
    return fit_review_policy(
        cal.probs,
        label_ids(calibration.labels, fitted.labels),
        cal.readable,
        on_val.probs,
        on_val.readable,
        catch_target=review.catch_target,
        max_validation_flagged=review.max_validation_flagged,
        max_right_flagged=review.max_right_flagged,
        min_catch=review.min_catch,
        **_in_frame_cap(classifier, in_frame, review),
    )


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
        release_freed_memory()  # what counting and encoding the n-grams freed (~300 MB at 531k texts)
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


@dataclass(frozen=True)
class _Teacher:
    """The bag models as one reader whose probabilities a subword LSTM learns (their blend's mix)."""

    ngram_model: BagOfKeysClassifier | None
    ngram_weight: float
    ngrams: NgramVocabulary | None
    stems_model: BagOfKeysClassifier | None
    stems_weight: float
    vocab: Vocabulary
    text: TextSettings

    @property
    def available(self) -> bool:
        return self.ngram_model is not None or self.stems_model is not None

    def probs(self, tokens: pa.ListArray) -> np.ndarray | None:
        """[rows, classes] probabilities of the tokenised texts; None without a bag model."""
        import torch

        parts: list[tuple[float, np.ndarray]] = []
        if self.ngram_model is not None:
            encoded = (
                self.ngrams.encode(tokens, self.text.max_len)
                if self.ngrams is not None
                else encode_tokens(tokens, self.vocab, self.text.max_len)
            )
            parts.append((self.ngram_weight, predict_logits(self.ngram_model, encoded)))
        if self.stems_model is not None:
            encoded = encode_tokens(tokens, self.vocab, self.text.max_len)
            parts.append((self.stems_weight, predict_logits(self.stems_model, encoded)))
        if not parts:
            return None
        total = sum(weight for weight, _ in parts)
        return sum(
            weight / total * torch.softmax(torch.from_numpy(logits), 1).numpy() for weight, logits in parts
        )


@dataclass(frozen=True)
class _SubwordInputs:
    """What the subword LSTM trains on: the source rows, the phrases and their augmented variants."""

    vocab: SubwordVocabulary
    train: Any  # SubwordTexts
    val: Any
    targets: np.ndarray  # [rows, classes] probabilities
    weights: np.ndarray | None
    augmented_rows: int
    unlabelled_rows: int


def _subword_inputs(
    train: LabelledTexts,
    phrases: LabelledTexts | None,
    unlabelled: Sequence[str] | None,
    encoded: _Encoded,
    labels: tuple[str, ...],
    text: TextSettings,
    architecture: ArchitectureSettings,
    training: TrainingSettings,
    teacher: _Teacher,
) -> _SubwordInputs:
    """The training texts (source rows and phrase copies, as the bag models read them, plus each
    phrase in ``augment_per_phrase`` noisy carrier sentences, plus the unlabelled scored comments),
    their n-gram vocabulary and targets: one-hot for the rows given, the teacher's probabilities mixed
    in for the augmented ones, the teacher's alone for the unlabelled ones."""
    base_tokens = encoded.bag.train_tokens
    aug_texts, aug_labels = [], []
    if phrases is not None and len(phrases.texts) and training.augment_per_phrase > 0:
        aug_texts, aug_labels = augmented_texts(
            phrases.texts, phrases.labels, training.augment_per_phrase, seed=training.seed
        )
    aug_tokens = tokenize_arrow(as_arrow_strings(aug_texts))
    use_unlabelled = bool(unlabelled) and teacher.available and training.self_train_weight > 0
    unl_tokens = tokenize_arrow(as_arrow_strings(list(unlabelled) if use_unlabelled else []))
    tokens = pa.concat_arrays([base_tokens, aug_tokens, unl_tokens])
    vocab = SubwordVocabulary.build(
        tokens,
        form=TokenForm(drop_stopwords=text.drop_stopwords),
        spec=CharNgramSpec(min_n=architecture.subword_min_n, max_n=architecture.subword_max_n),
        max_size=architecture.subword_max_grams,
    )
    source = base_tokens.slice(0, len(train.texts))
    frames = vocab.frame_words(source, train.labels, min_class_coverage=text.frame_coverage)
    eye = np.eye(len(labels), dtype=np.float32)
    targets = [eye[encoded.bag.train_y]]
    weights = [encoded.bag.train_weights if encoded.bag.train_weights is not None else
               np.ones(len(encoded.bag.train_y), dtype=np.float32)]  # fmt: skip
    if aug_texts:
        aug_targets = eye[label_ids(aug_labels, labels)]
        taught = teacher.probs(aug_tokens) if training.distill_weight > 0 else None
        if taught is not None:
            aug_targets = training.distill_weight * taught + (1 - training.distill_weight) * aug_targets
        targets.append(aug_targets.astype(np.float32))
        weights.append(np.ones(len(aug_texts), dtype=np.float32))
    if use_unlabelled:
        targets.append(teacher.probs(unl_tokens).astype(np.float32))
        weights.append(np.full(len(unl_tokens), training.self_train_weight, dtype=np.float32))
    weight = np.concatenate(weights)
    return _SubwordInputs(
        vocab,
        vocab.encode(tokens, text.max_len, frame_words=frames),
        vocab.encode(encoded.bag.val_tokens, text.max_len, frame_words=frames).with_frames_masked(),
        np.concatenate(targets),
        None if np.all(weight == 1) else weight,
        len(aug_texts),
        len(unl_tokens),
    )
