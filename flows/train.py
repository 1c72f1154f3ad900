"""The ``train-lstm`` flow: source JSON -> validated rows -> split -> LSTM -> evaluated, versioned bundle.

The flow only wires tasks; every step lives in ``tasks/`` (I/O, validation, reports) or
``lstm_model/`` (the model itself).
"""

from __future__ import annotations

import pandas as pd
from prefect import flow
from prefect import get_run_logger
from pydantic import BaseModel

from flows.configs import TrainConfig
from tasks.freeform import load_freeform_eval
from tasks.modeling import evaluate_model
from tasks.modeling import package_model
from tasks.modeling import train_model
from tasks.registry import promote_model
from tasks.registry import publish_model
from tasks.reports import learning_curve_png
from tasks.reports import parquet_bytes
from tasks.reports import publish_training_artifacts
from tasks.source import fetch_source
from tasks.source import parse_source
from tasks.training_data import fingerprint
from tasks.training_data import split_dataset
from tasks.training_data import validate_training_data
from tasks.validation import ValidationOutcome


class TrainSummary(BaseModel):
    version: str
    model_uri: str
    promoted: bool
    device: str
    valid_rows: int
    rejected_rows: int
    metrics: dict[str, dict[str, float]]


def prepare_data(config: TrainConfig) -> tuple[ValidationOutcome, dict[str, pd.DataFrame]]:
    """Source -> validated rows -> split: everything before training (bench/training_input_memory.py
    measures its peak memory through this same function)."""
    frame = parse_source(fetch_source(config.storage_root(), config.source))
    checked = validate_training_data(frame, config.categories, config.severities)
    splits = split_dataset(
        checked.valid,
        config.val_fraction,
        config.test_fraction,
        config.seed,
        config.categories,
        config.min_rows_per_class,
    )
    return checked, splits


@flow(name="train-lstm", log_prints=True)
def train_lstm(config: TrainConfig = TrainConfig()) -> TrainSummary:
    storage = config.storage_root()
    checked, splits = prepare_data(config)
    freeform = load_freeform_eval(config.categories)
    fitted = train_model(
        splits,
        tuple(sorted(config.categories)),
        config.text_settings(),
        config.architecture(),
        config.training_settings(),
        config.second_model_settings(),
        config.review_settings(),
        calibration=freeform.dev,
    )
    evaluation_sets = {"test": splits["test"], "freeform": freeform.final}
    metrics = evaluate_model(fitted, {name: rows for name, rows in evaluation_sets.items() if len(rows)})
    bundle = package_model(fitted, metrics, splits, fingerprint(checked.valid))
    version = bundle.version
    curve = learning_curve_png(fitted.report.history, fitted.report.best_epoch)
    model_uri = publish_model(
        storage,
        bundle,
        {"rejected_rows.parquet": parquet_bytes(checked.rejected), "learning_curve.png": curve},
    )
    promoted = promote_model(storage, version, metrics["test"].macro_f1, config.promote_threshold)
    publish_training_artifacts(version, metrics, promoted, fitted.report.device, curve)
    summary = TrainSummary(
        version=version,
        model_uri=model_uri,
        promoted=promoted,
        device=fitted.report.device,
        valid_rows=len(checked.valid),
        rejected_rows=len(checked.rejected),
        metrics={name: {"accuracy": m.accuracy, "macro_f1": m.macro_f1} for name, m in metrics.items()},
    )
    get_run_logger().info("Model %s: %s", version, summary.metrics)
    return summary
