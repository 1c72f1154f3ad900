"""Free-form generalisation, before and after: in-frame test macro-F1, free-form macro-F1 and the
``needs_review`` flag, over a few seeds (each seed changes the split and the weights).

Variants (every other setting is the project's default):

* ``whole words, last state``: no template masking, whole words, the LSTM's last-token state;
* ``masking, 5-char prefixes, last state``: the model before the stems (template masking on);
* ``stems, stop words, mean pooling: LSTM alone``: today's LSTM without the second model;
* ``project defaults``: the same LSTM averaged with the bag-of-stems model.

The free-form comments (tasks/resources/freeform_eval.jsonl) are hand-written; every training uses
the ``dev`` half to fit its needs_review threshold, and every figure here is on the ``final`` half,
which no choice was made on. ``needs_review`` figures: the share of the wrong free-form predictions
it flags (target >= 80%), the share of the right ones it flags (the analysts' cost), and the share
of in-frame test rows it flags (target <= 5%).

    .venv/bin/python bench/freeform_generalisation.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench._common import cpu_name
from bench._common import fit_on_rows
from bench._common import load_rows
from bench._common import mean_sd

VARIANTS: dict[str, dict] = {
    "whole words, last state": {
        "stem": False, "drop_stopwords": False, "pooling": "last", "second_model_weight": 0.0,
        "frame_mask_prob": 0.0, "token_mask_prob": 0.0,
    },
    "masking, 5-char prefixes, last state": {
        "stem": False, "drop_stopwords": False, "prefix_chars": 5, "pooling": "last", "second_model_weight": 0.0,
    },
    "stems, stop words, mean pooling: LSTM alone": {"second_model_weight": 0.0},
    "project defaults (LSTM + bag-of-stems)": {},
}  # fmt: skip


def run(rows: list[dict], freeform, overrides: dict, seed: int) -> dict[str, float]:
    """One training and its figures."""
    import pandas as pd

    from flows.configs import TrainConfig
    from lstm_model.predict import Classifier
    from tasks.training.modeling import evaluate_classifier

    started = time.perf_counter()
    trained = fit_on_rows(rows, TrainConfig(seed=seed, device="cpu", **overrides), calibration=freeform.dev)
    seconds = time.perf_counter() - started
    classifier = Classifier.from_fitted(trained.fitted)
    test = pd.DataFrame([rows[i] for i in trained.parts["test"]])
    scores = classifier.score(freeform.final["comentario"].tolist())
    truth = (
        freeform.final["categoria"].map({label: i for i, label in enumerate(classifier.labels)}).to_numpy()
    )
    wrong = scores.predicted != truth
    in_frame = classifier.score(test["comentario"].tolist())
    return {
        "test_f1": evaluate_classifier(classifier, test).macro_f1,
        "freeform_f1": evaluate_classifier(classifier, freeform.final).macro_f1,
        "wrong_flagged": float(scores.needs_review[wrong].mean()) if wrong.any() else float("nan"),
        "right_flagged": float(scores.needs_review[~wrong].mean()) if (~wrong).any() else float("nan"),
        "in_frame_flagged": float(in_frame.needs_review.mean()),
        "epochs": len(trained.fitted.report.history),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    import torch

    from tasks.common.freeform import load_freeform

    rows, freeform = load_rows(), load_freeform()
    print(
        f"CPU: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"free-form: {len(freeform.dev)} dev rows (threshold), {len(freeform.final)} final rows (figures)\n"
    )
    header = f"{'variant':46s} {'seed':>4s} {'test F1':>8s} {'free-form F1':>12s} {'wrong flagged':>13s} "
    print(header + f"{'right flagged':>13s} {'in-frame flagged':>16s} {'epochs':>6s} {'train s':>7s}")
    summary = []
    for name in args.variants:
        results = [run(rows, freeform, VARIANTS[name], seed) for seed in args.seeds]
        for seed, r in zip(args.seeds, results, strict=True):
            print(
                f"{name:46s} {seed:>4d} {r['test_f1']:>8.4f} {r['freeform_f1']:>12.4f} {r['wrong_flagged']:>13.3f} "
                f"{r['right_flagged']:>13.3f} {r['in_frame_flagged']:>16.3f} {r['epochs']:>6d} {r['seconds']:>7.1f}",
                flush=True,
            )
        summary.append((name, results))
    print("\nmean ± sd over seeds", args.seeds)
    print(f"{'variant':46s} {'test F1':>15s} {'free-form F1 (final)':>21s} {'wrong flagged':>15s} "
          f"{'right flagged':>15s} {'in-frame flagged':>16s} {'train s':>7s}")  # fmt: skip
    for name, results in summary:
        cells = [
            mean_sd([r[key] for r in results])
            for key in ("test_f1", "freeform_f1", "wrong_flagged", "right_flagged")
        ]
        print(
            f"{name:46s} {cells[0]:>15s} {cells[1]:>21s} {cells[2]:>15s} {cells[3]:>15s} "
            f"{np.mean([r['in_frame_flagged'] for r in results]):>16.3f} "
            f"{np.mean([r['seconds'] for r in results]):>7.1f}"
        )
    print("\ntargets: free-form F1 >= 0.65, test F1 >= 0.99, wrong flagged >= 0.80, in-frame flagged <= 0.05")


if __name__ == "__main__":
    main()
