"""Which features learn most from a few labelled free-form comments? A probe for the feedback loop.

The project's models read stems, so a word a label comment spells differently ("pedio", "envio",
"reembolzo") or a form no comment had is unknown to them; the feedback loop's free-form figure rose only
from 0.71 to 0.76 with 80 labels (``bench/feedback_loop.py``). This script compares, with scikit-learn
TF-IDF + logistic regression on the same rows (the source's 2,000 comments plus the 80 comments of
``bench/data/label_comments.jsonl``, label rows weighted), word features against character n-grams
within word boundaries, on the free-form **dev** half only (the final half stays for reporting).

It is a probe for choosing the next second model, not part of the product: no Prefect, no storage.

    .venv/bin/python bench/label_features_probe.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from bench._common import REPO
from bench._common import cpu_name
from bench._common import load_rows

LABEL_COMMENTS = REPO / "bench" / "data" / "label_comments.jsonl"
FREEFORM = REPO / "tasks" / "resources" / "freeform_eval.jsonl"
LABEL_WEIGHTS = (1.0, 3.0, 10.0)


def features() -> dict[str, object]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    common = {"lowercase": True, "strip_accents": "unicode", "sublinear_tf": True}
    return {
        "words": TfidfVectorizer(**common),
        "char n-grams 2-5 (in words)": TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), **common),
        "char n-grams 3-5 (in words)": TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common),
    }


def dev_macro_f1(vectoriser, train: pd.DataFrame, weights: np.ndarray, dev: pd.DataFrame) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    model = LogisticRegression(C=10.0, max_iter=2000)
    model.fit(vectoriser.fit_transform(train["comentario"]), train["categoria"], sample_weight=weights)
    predicted = model.predict(vectoriser.transform(dev["comentario"]))
    return float(f1_score(dev["categoria"], predicted, average="macro"))


def main() -> None:
    source = pd.DataFrame(load_rows())[["comentario", "categoria"]]
    labels = pd.read_json(LABEL_COMMENTS, lines=True)[["comentario", "categoria"]]
    freeform = pd.read_json(FREEFORM, lines=True)
    dev = freeform[freeform["part"] == "dev"]
    print(
        f"CPU: {cpu_name()}; {len(source)} source rows, {len(labels)} label comments, {len(dev)} dev comments"
    )
    print(
        f"{'features':30s} {'source only':>11s} "
        + " ".join(f"{f'+labels x{w:g}':>12s}" for w in LABEL_WEIGHTS)
    )
    for name, vectoriser in features().items():
        alone = dev_macro_f1(vectoriser, source, np.ones(len(source)), dev)
        both = pd.concat([source, labels], ignore_index=True)
        lifted = [
            dev_macro_f1(vectoriser, both, np.r_[np.ones(len(source)), np.full(len(labels), w)], dev)
            for w in LABEL_WEIGHTS
        ]
        print(f"{name:30s} {alone:>11.3f} " + " ".join(f"{f:>12.3f}" for f in lifted))


if __name__ == "__main__":
    main()
