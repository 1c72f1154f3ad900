"""``--label-weight``: rows an analyst labelled weigh more (or less) in the loss of both models, inside
the one training sequence (``fit_classifier``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from helpers import LABELS
from helpers import TINY_ARCHITECTURE
from helpers import comment_rows
from helpers import predicted_labels
from lstm_model.fit import fit_classifier
from lstm_model.predict import Classifier
from lstm_model.results import LabelledTexts
from lstm_model.settings import ArchitectureSettings
from lstm_model.settings import TextSettings
from lstm_model.settings import TrainingSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DISPUTED = "el reembolso del cupón nunca apareció"  # in the source as precios, labelled logistica


def fit(label_weight: float, analyst: bool = True):
    frame = comment_rows(16)
    texts = [*frame["comentario"], *[DISPUTED] * 4, *[DISPUTED] * 4]
    labels = [*frame["categoria"], *["precios"] * 4, *["logistica"] * 4]
    flags = [False] * 20 + [True] * 4 if analyst else None
    return fit_classifier(
        LabelledTexts(texts, labels, flags),
        LabelledTexts(list(frame["comentario"]), list(frame["categoria"])),
        LABELS,
        text=TextSettings(max_len=16),
        architecture=ArchitectureSettings(**TINY_ARCHITECTURE),
        training=replace(
            TrainingSettings(epochs=15, batch_size=8, device="cpu", patience=15, learning_rate=1e-2),
            label_weight=label_weight,
            frame_mask_prob=0.0,
            token_mask_prob=0.0,
        ),
    )


def test_row_weights():
    assert LabelledTexts(["a"], ["x"]).row_weights(5.0) is None
    assert LabelledTexts(["a", "b"], ["x", "x"], [True, False]).row_weights(1.0) is None
    assert LabelledTexts(["a", "b"], ["x", "x"], [True, False]).row_weights(3.0).tolist() == [3.0, 1.0]


def test_the_weight_decides_a_disputed_comment():
    heavy = Classifier.from_fitted(fit(label_weight=8.0))
    light = Classifier.from_fitted(fit(label_weight=1 / 8))
    assert predicted_labels(heavy, [DISPUTED]) == ["logistica"]
    assert predicted_labels(light, [DISPUTED]) == ["precios"]


def test_weight_one_trains_exactly_as_without_label_rows_marked():
    one, unmarked = fit(label_weight=1.0), fit(label_weight=1.0, analyst=False)
    for a, b in zip(one.model.state_dict().values(), unmarked.model.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy())
