"""Prefect tasks around :mod:`lstm_model`: train, evaluate, package. No storage here.

Each task is a thin wrapper that adds logging to one pure function, so the flow reads as the list of
steps and the functions stay testable without Prefect.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from lstm_model.bundle import ModelBundle
from lstm_model.evaluation import Metrics
from lstm_model.evaluation import evaluate
from lstm_model.fit import fit_classifier
from lstm_model.memory import release_freed_memory
from lstm_model.predict import Classifier
from lstm_model.results import FittedModel
from lstm_model.results import LabelledTexts
from lstm_model.settings import ArchitectureSettings
from lstm_model.settings import ReviewSettings
from lstm_model.settings import SecondModelSettings
from lstm_model.settings import TextSettings
from lstm_model.settings import TrainingSettings
from lstm_model.training import EpochMetrics
from tasks.feedback.labels import ORIGIN
from tasks.training.rows import LABELS


def new_version(fingerprint: str, now: datetime | None = None) -> str:
    """Sortable, unique enough for one publisher: UTC time plus the data fingerprint's first 8 hex."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}"


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(
    splits: dict[str, pd.DataFrame],
    labels: tuple[str, ...],
    text: TextSettings,
    architecture: ArchitectureSettings,
    training: TrainingSettings,
    second: SecondModelSettings,
    review: ReviewSettings,
    calibration: pd.DataFrame,
    in_frame: pd.DataFrame | None = None,
    phrases: LabelledTexts | None = None,
    unlabelled: list[str] | None = None,
) -> FittedModel:
    """:func:`~lstm_model.fit.fit_classifier` on the train and val splits, one log line per epoch;
    ``calibration`` (labelled free-form comments) fits the ``needs_review`` threshold, ``in_frame``
    (template comments with new wording) caps the share of good comments it flags, and ``phrases``
    (the domain phrases) are added to the training texts; ``unlabelled`` (comments already scored) are
    learnt without a label by a subword LSTM."""
    logger = get_run_logger()

    def progress(m: EpochMetrics) -> None:
        logger.info(
            "epoch %2d/%d  train_loss %.4f  val_loss %.4f  val_acc %.4f  val_macro_f1 %.4f  (%.2fs)",
            m.epoch,
            training.epochs,
            m.train_loss,
            m.val_loss,
            m.val_accuracy,
            m.val_macro_f1,
            m.seconds,
        )

    # What validation and the split freed (Python objects of GX and pandas, Arrow buffers) goes back
    # to the OS before the model's arrays are allocated: glibc would otherwise keep it mapped, and
    # the training's peak would sit on top of it (bench/training_input_memory.py).
    release_freed_memory()
    fitted = fit_classifier(
        _labelled(splits["train"]),
        _labelled(splits["val"]),
        labels,
        calibration=_labelled(calibration),
        in_frame=_labelled(in_frame) if in_frame is not None else None,
        text=text,
        architecture=architecture,
        training=training,
        second=second,
        review=review,
        phrases=phrases,
        unlabelled=unlabelled,
        on_epoch=progress,
    )
    report = fitted.report
    if report.phrase_rows:
        logger.info("Domain phrases: %d training rows (%d copies of each)", report.phrase_rows,
                    report.phrase_rows // len(phrases.texts))  # fmt: skip
    if unlabelled and not report.unlabelled_rows:
        logger.info("Scored comments: not used (only a subword LSTM with a bag model beside it learns them)")
    elif report.unlabelled_rows:
        logger.info("Scored comments: %d training rows, at loss weight %g", report.unlabelled_rows,
                    training.self_train_weight)  # fmt: skip
    logger.info(
        "Vocabulary: %d entries; %d template tokens masked during training: %s",
        len(fitted.vocab),
        len(fitted.frame_tokens),
        list(fitted.frame_tokens),
    )
    logger.info(
        "Trained on %s (%s): best epoch %d of %d, %.1fs of training",
        report.device,
        report.precision,
        report.best_epoch,
        len(report.history),
        sum(h.seconds for h in report.history),
    )
    policy = fitted.review
    if policy.min_confidence is not None:
        logger.info(
            "needs_review: averaged top probability <= %.4f (catches %.1f%% of the wrong predictions on %d "
            "calibration comments; flags %.1f%% of the validation rows and %.1f%% of %d in-frame comments "
            "with new wording)",
            policy.min_confidence,
            100 * (policy.calibration_catch_rate or 0.0),
            len(calibration),
            100 * (policy.validation_flag_rate or 0.0),
            100 * (policy.in_frame_flag_rate or 0.0),
            0 if in_frame is None else len(in_frame),
        )
    return fitted


def _labelled(frame: pd.DataFrame) -> LabelledTexts:
    """The texts and labels as Arrow string arrays (no Python string per row: a 664k-row training set
    as lists of str cost hundreds of MB)."""
    analyst = (frame[ORIGIN] == LABELS).to_numpy(dtype=bool) if ORIGIN in frame.columns else None
    return LabelledTexts(_strings(frame["comentario"]), _strings(frame["categoria"]), analyst)


def _strings(values: pd.Series) -> pa.Array:
    return pa.array(values, from_pandas=True).cast(pa.string())


def evaluate_classifier(classifier: Classifier, frame: pd.DataFrame) -> Metrics:
    """Metrics of ``classifier`` on a labelled frame (``comentario``, ``categoria``)."""
    probs = classifier.predict_proba(pa.array(frame["comentario"].tolist(), pa.string()))
    index = {label: i for i, label in enumerate(classifier.labels)}
    truth = frame["categoria"].map(index).to_numpy()
    return evaluate(truth, np.asarray(probs).argmax(axis=1), classifier.labels)


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(fitted: FittedModel, datasets: dict[str, pd.DataFrame]) -> dict[str, Metrics]:
    """Score each labelled frame (test split, free-form set, ...) as the model will be served."""
    logger = get_run_logger()
    classifier = Classifier.from_fitted(fitted)
    results: dict[str, Metrics] = {}
    for name, frame in datasets.items():
        results[name] = m = evaluate_classifier(classifier, frame)
        logger.info("%s: accuracy %.4f, macro-F1 %.4f (%d rows)", name, m.accuracy, m.macro_f1, len(frame))
    return results


@task(name="package-model", cache_policy=NO_CACHE)
def package_model(
    fitted: FittedModel,
    metrics: dict[str, Metrics],
    splits: dict[str, pd.DataFrame],
    fingerprint: str,
    version: str,
    data: dict[str, Any] | None = None,
    promotion: dict[str, Any] | None = None,
) -> ModelBundle:
    """The model, its vocabulary, metrics, split ids, training data counts and promotion decision as
    one versioned bundle (written once: everything it records is known before it is published)."""
    return ModelBundle.from_fitted(
        fitted,
        version=version,
        data_fingerprint=fingerprint,
        metrics=metrics,
        splits={name: part["id"].astype(str).tolist() for name, part in splits.items()},
        data=data,
        promotion=promotion,
    )
