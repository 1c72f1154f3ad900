"""Choose the blend weights (LSTM, n-gram model, stems model) on the ``dev`` parts of the evaluation suite.

Each seed trains once, the project's way (``freeform_generalisation.fit``); each model of that version
scores every kind's ``dev`` and ``final`` parts on its own, and the blends are worked out from those
probabilities for every weight triple on a 0.05 grid (the same arithmetic ``Classifier`` does). The
weights are ranked by the mean ``dev`` macro-F1 over the kinds that have a ``dev`` part (frames,
free-form, registers, real-world styles; the independent comments are reporting only), among those no
worse than each of their models on any ``dev`` kind. Printed: the ranking, the ``final`` figures of the
best weights, of today's default and of the scikit-learn anchor, and the CPU.

    .venv/bin/python bench/blend_weights.py --seeds 1 2 3
    .venv/bin/python bench/blend_weights.py --seeds 1 2 3 --labels with
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench._common import cpu_name
from bench._common import load_rows
from bench._common import mean_sd
from bench.freeform_generalisation import KINDS
from bench.freeform_generalisation import LABEL_FILE
from bench.freeform_generalisation import PARTS
from bench.freeform_generalisation import fit
from bench.freeform_generalisation import part_classifiers
from bench.freeform_generalisation import sklearn_anchor
from bench.freeform_generalisation import suite

MODELS = ("LSTM alone", "n-grams alone", "stems alone")
CHOOSING = tuple(kind for kind in KINDS if kind != "independent")
STEP = 0.05


def scored(rows, label_rows, sets, seed: int) -> dict:
    """{(kind, part): {"truth", each model's probabilities, "anchor" predictions}} of one training."""
    from flows.configs import TrainConfig

    fitted, train, phrases = fit(rows, label_rows, TrainConfig(seed=seed, device="cpu"), sets)
    models = part_classifiers(fitted)
    anchor = sklearn_anchor(train, phrases, fitted.labels)
    index = {label: i for i, label in enumerate(fitted.labels)}
    lstm_weight = round(1 - fitted.second_model_weight - fitted.stems_weight, 4)
    out: dict = {"weights": (lstm_weight, fitted.second_model_weight, fitted.stems_weight)}
    for kind in KINDS:
        for part in PARTS:
            frame = getattr(sets[kind], part)
            texts = frame["comentario"].tolist()
            entry = {"truth": frame["categoria"].map(index).to_numpy(), "anchor": np.array(anchor(frame))}
            entry.update({name: models[name].score(texts).probs for name in MODELS})
            out[(kind, part)] = entry
    return out


def macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = int(((predicted == c) & (truth == c)).sum())
        fp, fn = int(((predicted == c) & (truth != c)).sum()), int(((predicted != c) & (truth == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return float(np.mean(scores))


def figure(runs: list[dict], kind: str, part: str, weights: tuple[float, float, float] | str) -> list[float]:
    """Macro-F1 per seed of a blend (or of ``"anchor"``) on one kind and part."""
    values = []
    for run in runs:
        entry = run[(kind, part)]
        classes = entry[MODELS[0]].shape[1]
        if weights == "anchor":
            predicted = entry["anchor"]
        else:
            predicted = sum(w * entry[name] for w, name in zip(weights, MODELS, strict=True)).argmax(axis=1)
        values.append(macro_f1(entry["truth"], predicted, classes))
    return values


def grid() -> list[tuple[float, float, float]]:
    steps = np.round(np.arange(0, 1 + 1e-9, STEP), 2)
    return [
        (float(a), float(b), float(round(1 - a - b, 2))) for a in steps for b in steps if a + b <= 1 + 1e-9
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--labels", choices=["none", "with"], default="none", help="train with the 80 label comments"
    )
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    rows, sets = load_rows(), suite()
    label_rows = []
    if args.labels == "with":
        label_rows = [json.loads(x) for x in LABEL_FILE.read_text(encoding="utf-8").splitlines() if x.strip()]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; seeds {args.seeds}; labels: {args.labels}", flush=True)
    runs = [scored(rows, label_rows, sets, seed) for seed in args.seeds]
    default = runs[0]["weights"]
    alone = {name: tuple(float(name == m) for m in MODELS) for name in MODELS}

    def dev_means(weights) -> dict[str, float]:
        return {kind: float(np.mean(figure(runs, kind, "dev", weights))) for kind in CHOOSING}

    parts_dev = {name: dev_means(w) for name, w in alone.items()}
    ranked = []
    for weights in grid():
        dev = dev_means(weights)
        no_worse = all(dev[k] >= parts_dev[name][k] - 1e-9 for name in MODELS for k in CHOOSING)
        ranked.append((float(np.mean(list(dev.values()))), no_worse, weights, dev))
    ranked.sort(key=lambda r: (-r[1], -r[0]))
    print(
        "\nweights (LSTM, n-grams, stems) by mean dev macro-F1 (first: no worse than each model on every dev kind)"
    )
    for mean, no_worse, weights, dev in ranked[: args.top]:
        kinds = " ".join(f"{k} {v:.3f}" for k, v in dev.items())
        print(f"  {weights}  mean {mean:.4f}  {'ok ' if no_worse else 'BELOW A PART'}  {kinds}")
    best = ranked[0][2]
    print("\nfinal parts, mean ± sd over the seeds")
    shown = {"best on dev " + str(best): best, "default " + str(tuple(round(w, 2) for w in default)): default}
    shown.update(alone)
    shown["sklearn anchor"] = "anchor"
    for name, weights in shown.items():
        cells = " ".join(f"{kind} {mean_sd(figure(runs, kind, 'final', weights))}" for kind in KINDS)
        print(f"  {name:34s} {cells}")


if __name__ == "__main__":
    main()
