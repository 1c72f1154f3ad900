"""Template masking, before and after: in-frame test macro-F1 and free-form macro-F1 over a few seeds.

"before" trains the project's model with no masking (frame_mask_prob=0, token_mask_prob=0, whole
words); "after" uses the project's defaults (template tokens masked with p=0.9, any token with p=0.3,
5-character stems). Both are scored on the test split (in-frame) and on the 120 hand-written free-form
comments of tasks/resources/freeform_eval.jsonl.

    .venv/bin/python bench/freeform_generalisation.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import fit_on_rows
from bench._common import load_rows


def run(rows: list[dict], freeform, overrides: dict, seed: int) -> tuple[float, float, int, float]:
    """(test macro-F1, free-form macro-F1, epochs, training seconds) of one training."""
    import pandas as pd

    from flows.configs import TrainConfig
    from lstm_model.predict import Classifier
    from tasks.modeling import evaluate_classifier

    t = fit_on_rows(rows, TrainConfig(seed=seed, **overrides))
    classifier = Classifier.from_fitted(t.fitted)
    test = evaluate_classifier(classifier, pd.DataFrame([rows[i] for i in t.parts["test"]]))
    ff = evaluate_classifier(classifier, freeform)
    history = t.fitted.report.history
    return test.macro_f1, ff.macro_f1, len(history), sum(h.seconds for h in history)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    from tasks.freeform import load_freeform

    rows, freeform = load_rows(), load_freeform()
    variants = {
        "before (no masking, whole words)": {
            "frame_mask_prob": 0.0,
            "token_mask_prob": 0.0,
            "prefix_chars": None,
        },
        "after (project defaults)": {},
    }
    print(
        f"{'variant':36s} {'seed':>4s} {'test F1':>8s} {'free-form F1':>12s} {'epochs':>6s} {'train s':>8s}"
    )
    for name, overrides in variants.items():
        tests, ffs = [], []
        for seed in args.seeds:
            test_f1, ff_f1, epochs, seconds = run(rows, freeform, overrides, seed)
            tests.append(test_f1)
            ffs.append(ff_f1)
            print(
                f"{name:36s} {seed:>4d} {test_f1:>8.4f} {ff_f1:>12.4f} {epochs:>6d} {seconds:>8.1f}",
                flush=True,
            )
        print(f"{name:36s} mean {statistics.mean(tests):>8.4f} {statistics.mean(ffs):>12.4f}")


if __name__ == "__main__":
    main()
