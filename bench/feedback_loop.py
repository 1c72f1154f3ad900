"""The feedback loop, before and after: the real ``train-lstm`` flow (project defaults) trained (a) on the
source alone and (b) with the 80 hand-written comments of ``bench/data/label_comments.jsonl`` dropped
into ``<storage>/labels/``, over a few seeds (each seed changes both splits and the weights).

Figures, mean ± sd over the seeds:

* free-form macro-F1 on the ``final`` half of ``tasks/resources/freeform_eval.jsonl`` (never used for
  a choice; the labels are other comments, none from that set);
* in-frame macro-F1 on the source's test split;
* ``labels``: the label rows' own test part (8 rows: 2 per class, so coarse);
* free-form macro-F1 on the ``dev`` half: the one figure ``--label-weight`` is chosen on;
* ``needs_review`` on the ``final`` half: the share of the wrong predictions it flags, and of the right ones;
* for scale, the baseline the issue quotes (word TF-IDF + logistic regression, scikit-learn) trained on the
  very rows the flow trained on, on the ``final`` half.

``--review-loop`` adds (c), the loop as an analyst runs it, end to end: the model of (a) scores the ``dev``
half as a batch in ``incoming/`` (the real ``score-batches`` flow), ``review export --limit 80`` picks the
rows to label, the "analyst" fills ``categoria`` in with the dev half's own labels, the filled CSV goes into
``labels/`` unchanged, and the flow trains again. Its labels come from the stream being scored, as an
analyst's do, not from a separate writing. The ``final`` half is still never seen; ``dev`` is then training
data, so (c) reports no dev or ``needs_review`` figures (the calibration reads dev too).

    .venv/bin/python bench/feedback_loop.py                        # (a) and (b) at the default weight
    .venv/bin/python bench/feedback_loop.py --label-weights 1 2 3 5  # (b) at each weight: pick on dev
    .venv/bin/python bench/feedback_loop.py --review-loop            # (a), (b) and (c)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from bench._common import REPO
from bench._common import SHARED_DATA
from bench._common import cpu_name
from bench._common import mean_sd

LABEL_FILE = REPO / "bench" / "data" / "label_comments.jsonl"
TARGET_FREEFORM, TARGET_IN_FRAME = 0.85, 0.99
REVIEW_LOOP = object()  # the variant (c) marker among the label weights


def run(work: Path, seed: int, label_weight: float | None) -> dict[str, float]:
    """One training by the flow; ``label_weight`` None: no labels (labels/ absent)."""
    from flows.configs import TrainConfig
    from flows.train import train_lstm

    root = work / f"seed{seed}-{'none' if label_weight is None else label_weight}"
    shutil.rmtree(root, ignore_errors=True)
    if label_weight is not None:
        (root / "labels").mkdir(parents=True)
        shutil.copy(LABEL_FILE, root / "labels" / LABEL_FILE.name)
    options = {"label_weight": label_weight} if label_weight is not None else {}
    started = time.perf_counter()
    summary = train_lstm(
        TrainConfig(source=str(SHARED_DATA), storage=str(root), seed=seed, device="cpu", **options)
    )
    seconds = time.perf_counter() - started
    return measure(root, summary, seconds)


def measure(root: Path, summary, seconds: float, *, dev_trained: bool = False) -> dict[str, float]:
    """The figures of one trained version (``summary``: the train flow's); with ``dev_trained`` the dev
    half was training data, so its figures (dev, ``needs_review``) are left out as NaN."""
    from lstm_model.predict import Classifier
    from tasks.common.freeform import load_freeform
    from tasks.registry.versions import load_bundle
    from tasks.store.storage import Storage
    from tasks.training.modeling import evaluate_classifier

    bundle = load_bundle(Storage(str(root)), summary.version)
    freeform = load_freeform()
    classifier = Classifier.from_bundle(bundle)
    scores = classifier.score(freeform.final["comentario"].tolist())
    wrong = scores.predicted != [bundle.labels.index(c) for c in freeform.final["categoria"]]
    nan = float("nan")
    figures = {
        "wrong_flagged": float(scores.needs_review[wrong].mean()) if wrong.any() else nan,
        "right_flagged": float(scores.needs_review[~wrong].mean()) if (~wrong).any() else nan,
        "final": summary.metrics["freeform"]["macro_f1"],
        "test": summary.metrics["test"]["macro_f1"],
        "labels": summary.metrics.get("labels", {}).get("macro_f1", nan),
        "dev": evaluate_classifier(classifier, freeform.dev).macro_f1,
        "label_rows": summary.label_rows,
        "seconds": seconds,
        "tfidf_final": tfidf_reference(set(bundle.splits["train"]), freeform.final, root / "labels"),
    }
    if dev_trained:
        figures.update(dev=nan, wrong_flagged=nan, right_flagged=nan)
    return figures


def run_review_loop(work: Path, seed: int, limit: int = 80) -> dict[str, float]:
    """(c): train on the source, score the dev half, label the first ``limit`` rows of the review
    export from the dev half's own labels, train again with them in labels/."""
    import pandas as pd

    from flows.configs import ScoreConfig
    from flows.configs import TrainConfig
    from flows.score import score_batches
    from flows.train import train_lstm
    from tasks.common.freeform import load_freeform
    from tasks.feedback.review_export import export_review
    from tasks.store.storage import Storage

    root = work / f"seed{seed}-review"
    shutil.rmtree(root, ignore_errors=True)
    config = TrainConfig(source=str(SHARED_DATA), storage=str(root), seed=seed, device="cpu")
    train_lstm(config)
    dev = load_freeform().dev
    (root / "incoming").mkdir(parents=True)
    dev[["id", "comentario"]].to_parquet(root / "incoming" / "dev.parquet", index=False)
    score_batches(ScoreConfig(storage=str(root), min_file_age=0))
    export = root / "exports" / "review.csv"  # review export writes only outside the root or under exports/
    written, queued = export_review(Storage(str(root)), str(export), limit=limit)
    print(f"(c) seed {seed}: {queued} of {len(dev)} dev rows flagged for review, {written} exported")
    filled = pd.read_csv(export, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    truth = dict(zip(dev["id"].astype(str), dev["categoria"], strict=True))
    filled["categoria"] = filled["id"].map(truth)  # the analyst's answers
    (root / "labels").mkdir()
    (root / "labels" / "review.csv").write_bytes(filled.to_csv(index=False).encode("utf-8-sig"))
    started = time.perf_counter()
    summary = train_lstm(config)
    result = measure(root, summary, time.perf_counter() - started, dev_trained=True)
    return result


def tfidf_reference(train_ids: set[str], final, labels: Path) -> float:
    """Word TF-IDF + logistic regression (scikit-learn) on the very rows the flow trained on (the
    source's and those of the label files in ``labels``): the baseline the issue quotes, for scale."""
    import pandas as pd
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from tasks.feedback.labels import read_label_files
    from tasks.store.storage import Storage

    # The files the flow reads (the same selection: hidden and "_" files skipped), read the same way.
    label_frames = [frame for _, frame in read_label_files(Storage(str(labels.parent)), str(labels))]
    rows = pd.concat([pd.read_json(SHARED_DATA, dtype=False), *label_frames])
    train = rows[rows["id"].astype(str).isin(train_ids)]
    vectoriser = TfidfVectorizer()
    model = LogisticRegression(max_iter=2000).fit(
        vectoriser.fit_transform(train["comentario"]), train["categoria"]
    )
    return float(
        f1_score(
            final["categoria"], model.predict(vectoriser.transform(final["comentario"])), average="macro"
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--label-weights",
        type=float,
        nargs="+",
        default=None,
        help="Train (b) at each of these weights (and skip (a)): the choice is made on the dev column.",
    )
    parser.add_argument(
        "--review-loop",
        action="store_true",
        help="Also run (c): label the review export of the scored dev half (see above).",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady on a shared 2-core box)"
    )
    args = parser.parse_args()
    if args.review_loop and args.label_weights:
        parser.error("--review-loop runs at the default weight: leave --label-weights out")
    import torch

    from lstm_model.settings import TrainingSettings

    torch.set_num_threads(args.threads)
    default_weight = TrainingSettings().label_weight
    variants = (
        [(f"(b) labels, weight {w:g}", w) for w in args.label_weights]
        if args.label_weights
        else [
            ("(a) source only", None),
            (f"(b) + 80 labels in labels/ (weight {default_weight:g})", default_weight),
        ]
    )
    if args.review_loop:
        variants.append(("(c) + 80 labelled rows of the review export", REVIEW_LOOP))
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, {args.threads} thread(s)")
    print(f"labels: {LABEL_FILE.relative_to(REPO)}; seeds {args.seeds}; model: the flow's defaults\n")
    columns = (
        "free-form final",
        "in-frame test",
        "labels test",
        "free-form dev",
        "TF-IDF+LR final",
        "wrong flagged",
        "right flagged",
    )
    print(f"{'variant':46s} {'seed':>4s} " + " ".join(f"{c:>15s}" for c in columns) + "  label rows  train s")
    results: dict[str, list[dict[str, float]]] = {}
    keys = ("final", "test", "labels", "dev", "tfidf_final", "wrong_flagged", "right_flagged")
    with tempfile.TemporaryDirectory(prefix="feedback-loop-") as tmp:
        for name, weight in variants:
            for seed in args.seeds:
                r = (
                    run_review_loop(Path(tmp), seed)
                    if weight is REVIEW_LOOP
                    else run(Path(tmp), seed, weight)
                )
                results.setdefault(name, []).append(r)
                cells = [f"{r[k]:.4f}" if r[k] == r[k] else "-" for k in keys]  # NaN: no labels
                print(
                    f"{name:46s} {seed:>4d} "
                    + " ".join(f"{c:>15s}" for c in cells)
                    + f"  {r['label_rows']:>10d}  {r['seconds']:>7.1f}",
                    flush=True,
                )
    print(f"\nmean ± sd over seeds {args.seeds}")
    print(f"{'variant':46s} " + " ".join(f"{c:>15s}" for c in columns))
    for name, rs in results.items():
        print(f"{name:46s} " + " ".join(f"{mean_sd([r[k] for r in rs]):>15s}" for k in keys))
    if args.label_weights:
        best = max(results, key=lambda n: statistics.mean(r["dev"] for r in results[n]))
        print(f"\nhighest free-form dev macro-F1: {best} (choose --label-weight on this column only)")
        return
    with_labels = results[variants[1][0]]  # (b): the figure
    final = statistics.mean(r["final"] for r in with_labels)
    in_frame = statistics.mean(r["test"] for r in with_labels)
    verdict = "met" if final >= TARGET_FREEFORM and in_frame >= TARGET_IN_FRAME else "NOT met"
    print(
        f"\ntarget with labels: free-form final >= {TARGET_FREEFORM}, in-frame >= {TARGET_IN_FRAME}: {verdict} "
        f"(free-form {final:.3f}, in-frame {in_frame:.3f})"
    )


if __name__ == "__main__":
    main()
