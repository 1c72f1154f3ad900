"""The ``train-lstm`` flow: source JSON + analysts' label files -> validated rows -> split -> LSTM ->
evaluated against the model in service (champion/challenger) -> versioned bundle, promoted or not.

The flow only wires tasks; every step lives in ``tasks/`` (I/O, validation, reports) or
``lstm_model/`` (the model itself).
"""

from __future__ import annotations

import dataclasses

import pandas as pd
from prefect import flow
from prefect import get_run_logger
from pydantic import BaseModel

from flows.configs import TrainConfig
from tasks.common.freeform import load_frames_eval
from tasks.common.freeform import load_freeform_eval
from tasks.common.validation import ValidationOutcome
from tasks.feedback.labels import load_labels
from tasks.registry.gate import unreadable_labels_blocker
from tasks.registry.promotion import apply_promotion
from tasks.registry.versions import publish_model
from tasks.store.folders import create_layout
from tasks.store.models import EVAL_FILE
from tasks.store.models import LEARNING_CURVE_FILE
from tasks.store.models import REJECTED_ROWS_FILE
from tasks.store.models import version_uri
from tasks.training.champion import challenge_champion
from tasks.training.dataset import fingerprint
from tasks.training.dataset import split_dataset
from tasks.training.dataset import training_columns_only
from tasks.training.dataset import validate_training_data
from tasks.training.modeling import evaluate_model
from tasks.training.modeling import new_version
from tasks.training.modeling import package_model
from tasks.training.modeling import train_model
from tasks.training.phrases import load_domain_phrases
from tasks.training.reports import learning_curve_png
from tasks.training.reports import parquet_bytes
from tasks.training.reports import publish_training_artifacts
from tasks.training.rows import TrainingRows
from tasks.training.rows import combine_training_rows
from tasks.training.rows import evaluation_rows
from tasks.training.rows import evaluation_sets
from tasks.training.rows import gate_set
from tasks.training.scored_texts import load_scored_texts
from tasks.training.source import fetch_source
from tasks.training.source import parse_source


class TrainSummary(BaseModel):
    version: str
    model_uri: str
    rejected_rows_uri: str = ""  # rejected_rows.parquet in the model folder
    learning_curve_uri: str = ""
    promoted: bool
    device: str
    valid_rows: int  # rows trained on, validated and tested (source and label rows)
    rejected_rows: int  # rows left out (rejected_rows.parquet)
    label_rows: int = 0
    unlabelled_rows: int = 0
    champion: str | None = None
    promotion_reasons: list[str] = []
    metrics: dict[str, dict[str, float]]


def prepare_data(
    config: TrainConfig,
) -> tuple[ValidationOutcome, TrainingRows, dict[str, pd.DataFrame]]:
    """Source and analysts' labels -> validated rows -> split: everything before training
    (bench/training_input_memory.py measures its peak memory through this same function)."""
    storage = config.storage_root()
    # No name for the parsed frame: once validated, only the columns training reads are kept (the
    # flow holds ``checked`` to the end; the rejected rows keep every column).
    checked = training_columns_only(
        validate_training_data(
            parse_source(fetch_source(storage, config.source)), config.categories, config.severities
        )
    )
    labels = load_labels(storage, config.labels, config.categories, config.min_file_age)
    data = combine_training_rows(checked, labels, config.source)
    splits = split_dataset(
        data.rows,
        config.val_fraction,
        config.test_fraction,
        config.seed,
        config.categories,
        config.min_rows_per_class,
    )
    return checked, data, splits


@flow(name="train-lstm", log_prints=True)
def train_lstm(config: TrainConfig = TrainConfig()) -> TrainSummary:
    storage = config.storage_root()
    created = create_layout(storage)  # incoming/, labels/, exports/: the folders people use next
    if created:
        get_run_logger().info("Created %s under %s", ", ".join(f"{f}/" for f in created), storage.uri())
    checked, data, splits = prepare_data(config)
    # The fingerprint is all the flow needs of the combined rows (the splits hold them too): taken now,
    # the rows are not held through training (~100 MB at 664k rows).
    data_fingerprint = fingerprint(data.rows)
    data = dataclasses.replace(data, rows=data.rows.iloc[:0])
    freeform = load_freeform_eval(config.categories)
    frames = load_frames_eval(config.categories)
    phrases = load_domain_phrases(storage, config.domain_phrases, config.categories)
    # Comments already scored, learnt without a label; none of the splits' or evaluation sets' texts.
    known = [*splits.values(), freeform.dev, freeform.final, frames.dev, frames.final]
    scored = load_scored_texts(storage, config.scored_rows, known)
    fitted = train_model(
        splits,
        tuple(sorted(config.categories)),
        config.text_settings(),
        config.architecture(),
        config.training_settings(),
        config.second_model_settings(),
        config.review_settings(),
        calibration=freeform.dev,
        in_frame=frames.dev,
        phrases=phrases.texts,
        unlabelled=scored.texts,
    )
    eval_rows = evaluation_rows(splits)
    datasets = {**evaluation_sets(eval_rows), "freeform": freeform.final, "frames": frames.final}
    metrics = evaluate_model(fitted, {name: rows for name, rows in datasets.items() if len(rows)})
    judged_on = gate_set(list(metrics))
    if judged_on != "test":
        get_run_logger().warning(
            "No source row is left (label files relabel every source id): --promote-threshold is "
            "judged on the %s set",
            judged_on,
        )
    version = new_version(data_fingerprint)
    unreadable = data.summary["label_files_unreadable"]
    decision = challenge_champion(
        storage,
        version,
        fitted,
        splits,
        checked.valid,
        freeform.final,
        metrics[judged_on].macro_f1,
        config.promote_threshold,
        config.max_regression,
        blockers=[unreadable_labels_blocker(unreadable)] if unreadable else [],
    )
    bundle = package_model(
        fitted,
        metrics,
        splits,
        data_fingerprint,
        version,
        {**data.summary, "domain_phrases": phrases.summary(), "scored_texts": scored.summary()},
        decision.to_dict(),
    )
    curve = learning_curve_png(fitted.report.history, fitted.report.best_epoch)
    model_uri = publish_model(
        storage,
        bundle,
        {
            REJECTED_ROWS_FILE: parquet_bytes(data.rejected),
            LEARNING_CURVE_FILE: curve,
            EVAL_FILE: parquet_bytes(eval_rows),
        },
    )
    promoted = apply_promotion(storage, version, decision)
    publish_training_artifacts(version, metrics, promoted, fitted.report.device, curve)
    summary = TrainSummary(
        version=version,
        model_uri=model_uri,
        rejected_rows_uri=version_uri(storage, version, REJECTED_ROWS_FILE),
        learning_curve_uri=version_uri(storage, version, LEARNING_CURVE_FILE),
        promoted=promoted,
        device=fitted.report.device,
        valid_rows=data.summary["rows_used"],
        rejected_rows=len(data.rejected),
        label_rows=data.summary["label_rows"],
        unlabelled_rows=data.summary["unlabelled_rows"],
        champion=decision.champion,
        promotion_reasons=list(decision.reasons),
        metrics={name: {"accuracy": m.accuracy, "macro_f1": m.macro_f1} for name, m in metrics.items()},
    )
    get_run_logger().info("Model %s: %s", version, summary.metrics)
    if unreadable:
        raise LabelFilesUnreadable(
            f"{len(unreadable)} label file(s) not read; version {version} was trained without them "
            f"({'promoted' if promoted else 'not promoted'}): " + "; ".join(f["reason"] for f in unreadable)
        )
    return summary


class LabelFilesUnreadable(RuntimeError):
    """Training went on without some label files; the run ends Failed so that someone fixes them."""
