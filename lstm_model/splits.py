"""Reproducible stratified train/validation/test split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(
    labels: Sequence[str], *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 42
) -> dict[str, np.ndarray]:
    """Row positions for ``train``, ``val`` and ``test``, each class split in the same proportions.

    Rounding is done per class, so every class with at least three rows appears in all three parts.
    The same labels, fractions and seed always give the same positions.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions: val={val_fraction}, test={test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)
        rows = rows[rng.permutation(len(rows))]
        n_test = int(round(len(rows) * test_fraction))
        n_val = int(round(len(rows) * val_fraction))
        if len(rows) >= 3:
            n_test, n_val = max(n_test, 1 if test_fraction else 0), max(n_val, 1 if val_fraction else 0)
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test : n_test + n_val])
        parts["train"].append(rows[n_test + n_val :])
    return {
        name: np.sort(np.concatenate(chunks)) if chunks else np.array([], int)
        for name, chunks in parts.items()
    }
