"""How the model does on comments nobody trained it on, by kind, over a few seeds (each seed changes
the split and the weights), with and without the 80 label comments of ``bench/feedback_loop.py``.

The evaluation suite (``bench/make_eval_suite.py``; ``tasks/resources/``; ``bench/data/``) has five
kinds (the fourth, ``independent``, is reporting only: see ``INDEPENDENT_FILE``), each split once into a
``dev`` part (choices are made on it; the training fits ``needs_review`` on it) and a ``final`` part
(only reported):

1. ``frames``: the four training templates with new problem phrases, new slot words and typos;
2. ``freeform``: the 280 hand-written free-form comments;
3. ``registers``: 128 comments in registers the others lack (voseo, Spain/Mexico/Chile slang, very
   short, long rants, emoji, all caps, two topics);
4. ``independent``: 240 comments by a helper who read no project file;
5. ``realworld``: 320 real-world styles (tweets, app reviews, chats, e-mails, speech-to-text, slang,
   Spanglish, 2-5 words) by helpers who read no project file (``REALWORLD_FILE``).

Per kind and part: macro-F1 and the share of rows flagged ``needs_review``; for the free-form kinds
also the share of their WRONG predictions flagged and of their right ones. Then, side by side, the
macro-F1 of each model of the version alone (the LSTM, the n-gram and stems bag models), the default
blend, and scikit-learn's char_wb TF-IDF + logistic regression on the same rows and phrases.

Variants are project defaults with some settings replaced; ``+labels`` trains with the 80 label
comments as the flow does (split on their own, loss weight ``label_weight``).

    .venv/bin/python bench/freeform_generalisation.py --seeds 1 2 3
    .venv/bin/python bench/freeform_generalisation.py --variants defaults "char_ngrams w0.8" --labels both
    .venv/bin/python bench/freeform_generalisation.py --variants stems "char_ngrams w0.8" defaults --labels none
    .venv/bin/python bench/freeform_generalisation.py --variants defaults "scored texts" --labels none

``scored texts`` trains as a storage root whose ``predictions/`` holds comments would (``--scored-rows``):
the ``dev`` parts' texts and ``bench/data/scored_pool.jsonl``, unlabelled.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import REPO
from bench._common import cpu_name
from bench._common import domain_phrases
from bench._common import load_rows
from bench._common import mean_sd

LABEL_FILE = REPO / "bench" / "data" / "label_comments.jsonl"
KINDS = ("frames", "freeform", "registers", "independent", "realworld")
# Kind 4: 240 comments (60 per class, 9 registers) written for this by a helper that read no file of the
# project (no training row, no phrase, no other evaluation comment). Reporting only: never used for a
# choice; both "parts" are the whole file.
INDEPENDENT_FILE = REPO / "bench" / "data" / "independent_eval.jsonl"
# Kind 5: real-world styles (tweets, app reviews, chats without accents, e-mails, speech-to-text,
# slang, Spanglish, 2-5 words), 80 per class, written by a helper that read no file of the project,
# split once (seeded, by class and style) into dev (for choices) and final (reported only).
REALWORLD_FILE = REPO / "bench" / "data" / "realworld_eval.jsonl"
# Each model of a trained version scored on its own, beside the default blend, and the anchor: a
# scikit-learn char TF-IDF + logistic regression trained on the same training rows and phrases.
# Comments as customers write them, unlabelled, written by helpers who read no project file: what
# ``predictions/`` holds in service, for the ``scored texts`` variants.
SCORED_POOL_FILE = REPO / "bench" / "data" / "scored_pool.jsonl"
MODELS = ("LSTM alone", "n-grams alone", "stems alone", "default", "sklearn anchor")
PARTS = ("dev", "final")

VARIANTS: dict[str, dict] = {
    "defaults": {},
    "no phrases": {"domain_phrases": "none"},
    "phrase share 0.3": {"phrase_share": 0.3},
    "phrase share 0.5": {"phrase_share": 0.5},
    "stems": {"second_model_features": "stems"},
    "char_ngrams": {"second_model_features": "char_ngrams"},
    "stems w0.3": {"second_model_features": "stems", "second_model_weight": 0.3},
    "char_ngrams w0.4": {"second_model_features": "char_ngrams", "second_model_weight": 0.4},
    "char_ngrams w0.5": {"second_model_features": "char_ngrams", "second_model_weight": 0.5},
    "char_ngrams w0.6": {"second_model_features": "char_ngrams", "second_model_weight": 0.6},
    "char_ngrams w0.7": {"second_model_features": "char_ngrams", "second_model_weight": 0.7},
    "char_ngrams w0.8": {"second_model_features": "char_ngrams", "second_model_weight": 0.8},
    "char_ngrams w0.9": {"second_model_features": "char_ngrams", "second_model_weight": 0.9},
    "char_ngrams, token mask 0.2": {"second_model_features": "char_ngrams", "token_mask_prob": 0.2},
    "char_ngrams, token mask 0.4": {"second_model_features": "char_ngrams", "token_mask_prob": 0.4},
    "char_ngrams, frame mask 0.7": {"second_model_features": "char_ngrams", "frame_mask_prob": 0.7},
    "stems, frame mask 0.7": {"second_model_features": "stems", "frame_mask_prob": 0.7},
    "char_ngrams, frame mask 0.5": {"second_model_features": "char_ngrams", "frame_mask_prob": 0.5},
    "char_ngrams w0.9, token mask 0.4": {
        "second_model_features": "char_ngrams", "second_model_weight": 0.9, "token_mask_prob": 0.4},
    "char_ngrams 3-5": {"second_model_features": "char_ngrams", "second": {"ngram_min": 3}},
    "char_ngrams 3-5 w0.7": {
        "second_model_features": "char_ngrams", "second_model_weight": 0.7, "second": {"ngram_min": 3}},
    "char_ngrams lr 0.1": {"second_model_features": "char_ngrams", "second": {"learning_rate": 0.1}},
    "LSTM alone": {"second_model_weight": 0.0},
    # The texts of every ``dev`` part and of SCORED_POOL_FILE as comments the pipeline has scored
    # (no label): ``train --scored-rows``; the ``final`` parts stay unseen.
    "scored texts": {"scored": True},
    "scored texts w0.5": {"scored": True, "self_train_weight": 0.5},
    "both s0.25 n0.55": {"second_model_features": "both", "stems_model_weight": 0.25, "second_model_weight": 0.55},
    "both s0.2 n0.6": {"second_model_features": "both", "stems_model_weight": 0.2, "second_model_weight": 0.6},
    "both s0.25 n0.6": {"second_model_features": "both", "stems_model_weight": 0.25, "second_model_weight": 0.6},
    "both s0.3 n0.5": {"second_model_features": "both", "stems_model_weight": 0.3, "second_model_weight": 0.5},
    "both s0.4 n0.4": {"second_model_features": "both", "stems_model_weight": 0.4, "second_model_weight": 0.4},
}  # fmt: skip


def suite() -> dict[str, object]:
    import pandas as pd

    from tasks.common.freeform import FreeformSets
    from tasks.common.freeform import load_freeform

    sets = {"freeform": load_freeform()}
    independent = pd.read_json(INDEPENDENT_FILE, lines=True)[["comentario", "categoria"]]
    sets["independent"] = FreeformSets(independent, independent)
    realworld = pd.read_json(REALWORLD_FILE, lines=True)
    sets["realworld"] = FreeformSets(
        *(
            realworld[realworld["part"] == p][["comentario", "categoria"]].reset_index(drop=True)
            for p in PARTS
        )
    )
    try:  # the suite's other kinds (absent before it existed: figures of older code)
        from tasks.common.freeform import load_frames
        from tasks.common.freeform import load_registers

        sets.update(frames=load_frames(), registers=load_registers())
    except ImportError:
        for kind in ("frames", "registers"):
            rows = pd.read_json(REPO / "tasks" / "resources" / f"{kind}_eval.jsonl", lines=True)
            sets[kind] = FreeformSets(
                *(rows[rows["part"] == p].drop(columns="part").reset_index(drop=True) for p in PARTS)
            )
    return sets


def scored_texts(sets) -> list[str]:
    """The unlabelled comments of the ``scored texts`` variants: every ``dev`` part's texts (kinds with
    a ``final`` part of their own) and the helpers' pool."""
    import pandas as pd

    texts = [t for kind in KINDS if kind != "independent" for t in sets[kind].dev["comentario"]]
    if SCORED_POOL_FILE.exists():
        texts += pd.read_json(SCORED_POOL_FILE, lines=True)["comentario"].tolist()
    return texts


def fit(
    rows: list[dict], label_rows: list[dict], cfg, sets, unlabelled=None
) -> tuple[object, object, object]:
    """Train as the flow does: source and label rows split on their own, label rows weighted.
    Returns (the fitted model, its training texts, the domain phrases it added)."""
    from lstm_model.fit import LabelledTexts
    from lstm_model.fit import fit_classifier
    from lstm_model.splits import stratified_split

    train, val = LabelledTexts([], [], []), LabelledTexts([], [], [])
    for group, analyst in ((rows, False), (label_rows, True)):
        if not group:
            continue
        cats = [r["categoria"] for r in group]
        parts = stratified_split(
            cats, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
        )
        for name, target in (("train", train), ("val", val)):
            for i in parts[name]:
                target.texts.append(group[i]["comentario"])
                target.labels.append(cats[i])
                target.analyst.append(analyst)
    if not label_rows:
        train = LabelledTexts(train.texts, train.labels)
        val = LabelledTexts(val.texts, val.labels)

    def labelled(frame):
        return LabelledTexts(frame["comentario"].tolist(), frame["categoria"].tolist())

    options = {"calibration": labelled(sets["freeform"].dev)}
    if "phrases" in inspect.signature(fit_classifier).parameters:  # the domain phrases, as the flow adds them
        options["phrases"] = domain_phrases(cfg)
    if "in_frame" in inspect.signature(fit_classifier).parameters:  # the suite's kind 1 caps the flag
        options["in_frame"] = labelled(sets["frames"].dev)
    if unlabelled:
        options["unlabelled"] = unlabelled
    fitted = fit_classifier(
        train,
        val,
        sorted({r["categoria"] for r in rows}),
        text=cfg.text_settings(),
        architecture=cfg.architecture(),
        training=cfg.training_settings(),
        second=cfg.__dict__.get("_second") or cfg.second_model_settings(),
        review=cfg.review_settings(),
        **options,
    )
    return fitted, train, options.get("phrases")


def part_classifiers(fitted) -> dict[str, object]:
    """The default blend and each of its models on its own (a model the version lacks is left out)."""
    from dataclasses import replace

    from lstm_model.predict import Classifier

    parts = {"default": fitted}
    parts["LSTM alone"] = replace(  # FittedModel.lstm_alone(), spelt out: older code lacks it
        fitted, second_model=None, second_model_weight=0.0, stems_model=None, stems_weight=0.0
    )
    if fitted.second_model is not None and fitted.ngrams is not None:
        parts["n-grams alone"] = replace(fitted, second_model_weight=1.0, stems_model=None, stems_weight=0.0)
    stems = (
        fitted.stems_model
        if fitted.stems_model is not None
        else (fitted.second_model if fitted.ngrams is None else None)
    )
    if stems is not None:
        parts["stems alone"] = replace(
            fitted,
            second_model=stems,
            ngrams=None,
            second_model_weight=1.0,
            stems_model=None,
            stems_weight=0.0,
        )
    return {name: Classifier.from_fitted(model) for name, model in parts.items()}


def sklearn_anchor(train, phrases, labels):
    """scikit-learn's char_wb 3-5 TF-IDF + logistic regression on the same training texts and phrases
    (each phrase once): the anchor the project's models are judged against."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts, targets = list(train.texts), list(train.labels)
    if phrases is not None:
        texts += list(phrases.texts)
        targets += list(phrases.labels)
    model = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True),
        LogisticRegression(C=10, max_iter=3000),
    )
    model.fit(texts, targets)
    index = {label: i for i, label in enumerate(labels)}
    order = [index[c] for c in model.classes_]

    def predict(frame):
        if not len(frame):
            return []
        picked = model.predict_proba(frame["comentario"].tolist()).argmax(axis=1)
        return [order[i] for i in picked]

    return predict


def run(rows, label_rows, sets, overrides: dict, seed: int) -> dict[str, float]:
    """One training and its figures per kind and part: the default blend (macro-F1, review flags), and
    each model of the version alone and the scikit-learn anchor (macro-F1)."""
    import numpy as np

    from flows.configs import TrainConfig
    from lstm_model.evaluation import evaluate

    started = time.perf_counter()
    overrides = dict(overrides)
    second = overrides.pop("second", {})  # SecondModelSettings fields that are no TrainConfig flag
    unlabelled = scored_texts(sets) if overrides.pop("scored", False) else None
    cfg = TrainConfig(seed=seed, device="cpu", **overrides)
    if second:
        from dataclasses import replace

        settings = replace(cfg.second_model_settings(), **second)
        cfg.__dict__["_second"] = settings
    fitted, train, phrases = fit(rows, label_rows, cfg, sets, unlabelled)
    figures: dict[str, float] = {"seconds": time.perf_counter() - started}
    classifiers = part_classifiers(fitted)
    anchor = sklearn_anchor(train, phrases, fitted.labels)
    index = {label: i for i, label in enumerate(fitted.labels)}
    for kind in KINDS:
        for part in PARTS:
            frame = getattr(sets[kind], part)
            truth = frame["categoria"].map(index).to_numpy()
            key = f"{kind}/{part}"
            for name, classifier in classifiers.items():
                scores = classifier.score(frame["comentario"].tolist())
                f1 = evaluate(truth, scores.probs.argmax(axis=1), fitted.labels).macro_f1
                figures[f"{name}: {key} F1"] = f1
                if name != "default":
                    continue
                wrong = scores.predicted != truth
                figures[key + " F1"] = f1
                figures[key + " flagged"] = float(scores.needs_review.mean())
                figures[key + " wrong flagged"] = (
                    float(scores.needs_review[wrong].mean()) if wrong.any() else float("nan")
                )
                figures[key + " right flagged"] = (
                    float(scores.needs_review[~wrong].mean()) if (~wrong).any() else float("nan")
                )
            figures[f"sklearn anchor: {key} F1"] = evaluate(
                truth, np.array(anchor(frame)), fitted.labels
            ).macro_f1
    figures["threshold"] = float(fitted.review.min_confidence or np.nan)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["defaults"])
    parser.add_argument("--labels", choices=("none", "with", "both"), default="both")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steady on a shared box)")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows, sets = load_rows(), suite()
    label_rows = [json.loads(x) for x in LABEL_FILE.read_text(encoding="utf-8").splitlines() if x.strip()]
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, {args.threads} thread(s)")
    for kind in KINDS:
        print(f"{kind}: " + ", ".join(f"{len(getattr(sets[kind], p))} {p}" for p in PARTS))
    labels = {"none": [False], "with": [True], "both": [False, True]}[args.labels]
    results: dict[str, list[dict]] = {}
    columns = [f"{k}/{p} {m}" for p in PARTS for k in KINDS for m in ("F1", "flagged")]
    columns += [f"freeform/{p} wrong flagged" for p in PARTS]
    for name in args.variants:
        for with_labels in labels:
            label = f"{name}{' +labels' if with_labels else ''}"
            for seed in args.seeds:
                r = run(rows, label_rows if with_labels else [], sets, VARIANTS[name], seed)
                results.setdefault(label, []).append({"seed": seed, **r})
                cells = " ".join(f"{c.split()[0]} {c.split(' ', 1)[1]}={r[c]:.3f}" for c in columns)
                print(
                    f"{label} seed {seed} ({r['seconds']:.0f}s, threshold {r['threshold']:.3f}): {cells}",
                    flush=True,
                )
    print(f"\nmean ± sd over seeds {args.seeds}")
    for label, rs in results.items():
        print(f"\n{label}")
        print(f"  {'':10s} " + " ".join(f"{k + ' F1':>15s} {k[:5] + ' flag':>15s}" for k in KINDS)
              + f" {'ff wrong flag':>15s}")  # fmt: skip
        for part in PARTS:
            cells = []
            for kind in KINDS:
                cells += [mean_sd([r[f"{kind}/{part} F1"] for r in rs]),
                          mean_sd([r[f"{kind}/{part} flagged"] for r in rs])]  # fmt: skip
            cells.append(mean_sd([r[f"freeform/{part} wrong flagged"] for r in rs]))
            print(f"  {part:10s} " + " ".join(f"{c:>15s}" for c in cells))
    print(
        f"\nmacro-F1 of each model alone, the default blend and the scikit-learn anchor ({PARTS[-1]} parts)"
    )
    for label, rs in results.items():
        print(f"\n{label}")
        print(f"  {'':16s} " + " ".join(f"{k:>15s}" for k in KINDS))
        for name in MODELS:
            cells = [mean_sd([r.get(f"{name}: {k}/{PARTS[-1]} F1", float("nan")) for r in rs]) for k in KINDS]
            print(f"  {name:16s} " + " ".join(f"{c:>15s}" for c in cells))
        right = mean_sd([r[f"freeform/{PARTS[-1]} right flagged"] for r in rs])
        print(f"  freeform/{PARTS[-1]} right predictions flagged: {right}")
    print(
        "\ntargets (final, no labels): the LSTM alone >= 0.99 frames, >= 0.90 freeform, >= 0.85 registers and "
        "realworld; the default >= the sklearn anchor on every kind; needs_review: >= 80% of the wrong "
        "freeform rows, <= 5% of the frames and <= 15% of the right freeform rows flagged"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
