"""Comments the pipeline has already scored, read back for training without a label.

``predictions/`` holds what customers really write (accent-free chats, slang, new product names); the
templated source and the domain phrases do not. A training reads up to ``--scored-rows`` distinct
comments from it and the subword LSTM learns the bag models' reading of them (distillation on real
text: ``lstm_model.fit.fit_classifier(unlabelled=...)``); the champion/challenger gate then decides
whether the version serves, as for any other training.

What is read, and why:

* the newest partitions first, part by part, only the ``comentario`` and ``needs_review`` columns, and
  stops at ``max_rows`` distinct comments: memory is bounded by one part's two columns (a part holds
  one scoring chunk) plus the texts kept, however large ``predictions/`` grows;
* rows flagged ``needs_review`` are left out: they are the ones the models are unsure of (the bag models'
  reading of them teaches nothing) and the analysts' queue, whose labels arrive through ``labels/``;
* comments equal (without case or extra spaces) to a training, validation, test or evaluation text
  are left out, so that no split is learnt from, even without its label;
* a part that cannot be read is skipped with a warning: it never stops a training.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common.retries import is_transient
from tasks.common.retries import retry_if_transient
from tasks.common.schema import text_key
from tasks.store.storage import Storage
from tasks.store.tables import PREDICTIONS
from tasks.store.tables import newest_first
from tasks.store.tables import read_part
from tasks.store.tables import table_parts

COLUMNS = ("comentario", "needs_review")


@dataclass(frozen=True)
class ScoredTexts:
    texts: list[str]
    max_rows: int
    files_read: int
    files_skipped: int  # parts that could not be read
    flagged_left_out: int  # rows flagged needs_review
    known_left_out: int  # distinct comments equal to a split's or an evaluation set's text

    def summary(self) -> dict[str, int]:
        """What ``bundle.json`` keeps of them (``data.scored_texts``)."""
        return {"rows": len(self.texts), "max_rows": self.max_rows, "files_read": self.files_read,
                "files_skipped": self.files_skipped, "flagged_left_out": self.flagged_left_out,
                "known_left_out": self.known_left_out}  # fmt: skip


def collect_texts(
    batches: Iterable[tuple[pd.Series, pd.Series]],
    max_rows: int,
    known: set[str],
) -> tuple[list[str], int, int]:
    """Distinct unflagged comments, in order, up to ``max_rows``, from batches of (comentario,
    needs_review); and how many rows were left out as flagged, and how many distinct comments as known.
    Pure: :func:`load_scored_texts` feeds it."""
    kept: list[str] = []
    seen: set[str] = set()
    flagged = known_hits = 0
    for texts, needs_review in batches:
        keys = text_key(texts)
        for text, key, flag in zip(texts, keys, needs_review.fillna(True), strict=True):
            if len(kept) >= max_rows:
                return kept, flagged, known_hits
            if not key:  # missing or blank
                continue
            if flag:
                flagged += 1
                continue
            if key in seen:
                continue
            seen.add(key)
            if key in known:
                known_hits += 1
                continue
            kept.append(text.strip())
    return kept, flagged, known_hits


@task(name="load-scored-texts", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_if_transient)  # fmt: skip
def load_scored_texts(storage: Storage, max_rows: int, known: Sequence[pd.DataFrame]) -> ScoredTexts:
    """Up to ``max_rows`` distinct comments from ``predictions/`` (see the module docstring), none equal
    to a ``comentario`` of the ``known`` frames (the splits, the evaluation sets)."""
    logger = get_run_logger()
    if max_rows <= 0:
        logger.info("Scored comments: none (--scored-rows 0)")
        return ScoredTexts([], 0, 0, 0, 0, 0)
    known_keys = {key for frame in known for key in text_key(frame["comentario"].astype("string"))}
    parts = newest_first(table_parts(storage, PREDICTIONS))
    read = skipped = 0

    def batches():
        nonlocal read, skipped
        for rel in parts:
            try:
                table = read_part(storage, rel, COLUMNS)
            except (OSError, ValueError, KeyError) as exc:  # pyarrow's errors are OSError/ValueError
                if is_transient(exc):
                    raise  # the task is retried: a part is never left out for a passing network error
                skipped += 1
                logger.warning("Scored comments: %s skipped (%s)", rel, exc)
                continue
            read += 1
            columns = table.to_pandas()
            yield columns["comentario"], columns["needs_review"]

    texts, flagged, known_hits = collect_texts(batches(), max_rows, known_keys)
    result = ScoredTexts(texts, max_rows, read, skipped, flagged, known_hits)
    logger.info(
        "Scored comments: %d distinct from %d part(s) of %s/ (at most %d; %d flagged rows and %d comments "
        "of the splits or evaluation sets left out)",
        len(texts),
        read,
        PREDICTIONS,
        max_rows,
        flagged,
        known_hits,
    )
    return result
