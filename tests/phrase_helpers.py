"""The domain phrases as the training flow reads them, for tests that call ``fit_classifier``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lstm_model.results import LabelledTexts

INDEPENDENT_EVAL = Path(__file__).resolve().parents[1] / "bench" / "data" / "independent_eval.jsonl"


def builtin_phrases(categories: Sequence[str]) -> LabelledTexts:
    from tasks.training.phrases import RESOURCE
    from tasks.training.phrases import builtin_data
    from tasks.training.phrases import read_phrases

    return read_phrases(builtin_data(), RESOURCE, categories)[0]
