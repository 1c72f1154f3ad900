"""Classification metrics computed with numpy (no scikit-learn at run time)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassMetrics:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    macro_f1: float
    per_class: tuple[ClassMetrics, ...]
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: true label, columns: predicted label

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Metrics:
        return cls(
            accuracy=data["accuracy"],
            macro_f1=data["macro_f1"],
            per_class=tuple(ClassMetrics(**c) for c in data["per_class"]),
            labels=tuple(data["labels"]),
            confusion=tuple(tuple(r) for r in data["confusion"]),
        )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> Metrics:
    """Accuracy, macro-F1 and per-class precision/recall/F1 from integer class ids.

    A class with no predictions (or no support) gets precision (or recall) 0, as scikit-learn's
    ``zero_division=0`` does; macro-F1 averages over every label, present or not.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    true_pos = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0)
    actual = matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_pos / np.maximum(predicted, 1), 0.0)
        recall = np.where(actual > 0, true_pos / np.maximum(actual, 1), 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    per_class = tuple(
        ClassMetrics(label, float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, actual, strict=True)
    )
    accuracy = float(true_pos.sum() / len(y_true)) if len(y_true) else 0.0
    return Metrics(
        accuracy=accuracy,
        macro_f1=float(f1.mean()) if len(labels) else 0.0,
        per_class=per_class,
        labels=tuple(labels),
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
    )
