"""Champion / challenger: is the model just trained better than the one in service (``LATEST``)?

After training, the new model (challenger) and the current ``LATEST`` (champion) are scored in the
same run, on the same rows, one evaluation set at a time:

* ``test``: the union of both versions' in-frame test rows (``eval.parquet``, set ``test``);
* ``labels``: the union of both versions' analyst-labelled test rows (set ``labels``);
* ``freeform``: the ``final`` half of the hand-written free-form comments.

**Leakage.** When the data changed between the two trainings (label files added, the source grown),
a row in one version's test rows can be in the other's training split. Every row either model trained
on (the ``train`` and ``val`` ids of its ``splits.json``: validation rows chose its best epoch) is left
out of every set, and the table says how many. An id in both versions' evaluation rows is taken from
the challenger's (the newer label wins, as in training).

**Old champions.** A version trained before ``eval.parquet`` existed is judged on its ``splits.json``
test ids looked up in this run's validated source (the rows it had are not kept anywhere else); a
version without split ids (nothing says what it trained on) is compared on the free-form set only.

**The gate** is :func:`tasks.registry.gate.decide`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from prefect import get_run_logger
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from lstm_model.predict import Classifier
from lstm_model.results import FittedModel
from tasks.registry.eval_rows import EVAL_COLUMNS
from tasks.registry.eval_rows import EVAL_SET
from tasks.registry.eval_rows import read_eval_rows
from tasks.registry.gate import PromotionDecision
from tasks.registry.gate import SetComparison
from tasks.registry.gate import decide
from tasks.registry.versions import current_latest
from tasks.registry.versions import load_bundle
from tasks.store.storage import Storage
from tasks.training.modeling import evaluate_classifier
from tasks.training.rows import evaluation_rows

SETS = ("test", "labels", "freeform")
TRAINED_PARTS = ("train", "val")


@dataclass(frozen=True)
class Contender:
    """One side of the comparison: a model, the rows it trained on, the rows it was judged on."""

    version: str
    classifier: Classifier
    # Arrow-backed strings, not a Python set: 600k ids as str objects in a set (and its copies) cost
    # ~250 MB at the end of a 664k-row training run. None: unknown (a bundle without split ids).
    trained_ids: pd.Series | None
    eval_rows: pd.DataFrame  # EVAL_COLUMNS


def trained_ids(splits: dict[str, Sequence[str] | pd.Series]) -> pd.Series | None:
    """Ids a model learned from or was selected on (as strings); None when its bundle recorded no split."""
    parts = [splits[part] for part in TRAINED_PARTS if part in splits and len(splits[part])]
    if not parts:
        return None
    ids = pd.concat([pd.Series(part, dtype=str).astype(str) for part in parts], ignore_index=True)
    return ids.drop_duplicates().reset_index(drop=True)


def comparison_sets(
    challenger: Contender, champion: Contender | None, freeform: pd.DataFrame
) -> dict[str, tuple[pd.DataFrame, int]]:
    """Set name -> (rows to score both models on, rows left out as trained on)."""
    if champion is not None and champion.trained_ids is None:
        candidates = {"freeform": freeform}  # what the champion trained on is unknown: free-form only
    else:
        pooled = pd.concat(
            [challenger.eval_rows, *([champion.eval_rows] if champion is not None else [])],
            ignore_index=True,
        ).drop_duplicates("id", keep="first")  # the challenger's row of an id wins
        candidates = {name: pooled[pooled[EVAL_SET] == name] for name in SETS if name != "freeform"}
        candidates["freeform"] = freeform
    seen = [
        ids for ids in (challenger.trained_ids, champion.trained_ids if champion else None) if ids is not None
    ]
    labels = set(challenger.classifier.labels) & set(
        champion.classifier.labels if champion else challenger.classifier.labels
    )
    result = {}
    for name, rows in candidates.items():
        rows = rows[rows["categoria"].isin(labels)]
        ids = rows["id"].astype(str)
        trained = pd.Series(False, index=rows.index)
        for known in seen:
            trained |= ids.isin(known)
        if len(rows):
            result[name] = (rows[~trained].reset_index(drop=True), int(trained.sum()))
    return result


def compare(challenger: Contender, champion: Contender | None, freeform: pd.DataFrame) -> list[SetComparison]:
    """Both models' macro-F1 on each evaluation set, on exactly the same rows."""
    out = []
    for name, (rows, left_out) in comparison_sets(challenger, champion, freeform).items():
        new = evaluate_classifier(challenger.classifier, rows).macro_f1 if len(rows) else None
        old = evaluate_classifier(champion.classifier, rows).macro_f1 if len(rows) and champion else None
        out.append(SetComparison(name, len(rows), left_out, new, old))
    return out


def load_champion(storage: Storage, source_rows: pd.DataFrame) -> Contender | None:
    """The model in service as a contender, or None when nothing is promoted yet.

    ``source_rows`` (this run's validated source) stands in for the test rows of an old champion
    that kept no ``eval.parquet``: its ``splits.json`` test ids are looked up there.
    """
    version = current_latest(storage)
    if version is None:
        return None
    bundle = load_bundle(storage, version)
    rows = read_eval_rows(storage, version)
    if rows is None:
        test_ids = set(map(str, bundle.splits.get("test", [])))
        found = source_rows[source_rows["id"].astype(str).isin(test_ids)]
        rows = pd.DataFrame(
            {
                "id": found["id"].astype(str),
                "comentario": found["comentario"],
                "categoria": found["categoria"],
            }
        ).assign(**{EVAL_SET: "test"})
    return Contender(
        version, Classifier.from_bundle(bundle), trained_ids(bundle.splits), rows[list(EVAL_COLUMNS)]
    )


def challenger_contender(version: str, fitted: FittedModel, splits: dict[str, pd.DataFrame]) -> Contender:
    ids = {name: part["id"] for name, part in splits.items()}
    return Contender(version, Classifier.from_fitted(fitted), trained_ids(ids), evaluation_rows(splits))


@task(name="challenge-champion", cache_policy=NO_CACHE)
def challenge_champion(
    storage: Storage,
    version: str,
    fitted: FittedModel,
    splits: dict[str, pd.DataFrame],
    source_rows: pd.DataFrame,
    freeform: pd.DataFrame,
    test_macro_f1: float,
    threshold: float,
    max_regression: float,
    blockers: Sequence[str] = (),
) -> PromotionDecision:
    """Score the new model (``version``, not published yet) and ``LATEST`` side by side and decide;
    log the table and publish it as an artifact. ``blockers``: reasons from the training itself that
    forbid the automatic promotion whatever the figures (see :func:`tasks.registry.gate.decide`)."""
    logger = get_run_logger()
    challenger = challenger_contender(version, fitted, splits)
    in_service = current_latest(storage)
    champion, problem = None, None
    try:
        champion = load_champion(storage, source_rows)
    except Exception as exc:  # a broken LATEST must not pass for "no champion"
        problem = f"the model in service ({in_service}) could not be loaded for the comparison: {exc}"
    sets = compare(challenger, champion, freeform) if problem is None else []
    decision = decide(
        test_macro_f1,
        sets,
        in_service,
        threshold,
        max_regression,
        champion_problem=problem,
        blockers=blockers,
    )
    table = decision.table(challenger.version)
    for row in table:
        logger.info("champion/challenger %s", row)
    create_table_artifact(
        key="train-champion-challenger",
        table=table or [{"set": None, "note": "; ".join(decision.reasons)}],
        description=f"{challenger.version} vs {decision.champion or 'no champion'}: "
        f"{'promote' if decision.promote else 'do not promote'} ({'; '.join(decision.reasons)})",
    )
    return decision
