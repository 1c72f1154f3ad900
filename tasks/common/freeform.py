"""The evaluation comments that ship with the project: the hand-written free-form comments, and the
two other kinds of the evaluation suite (``bench/make_eval_suite.py``).

The training texts come from four sentence templates; these 280 comments (70 per class) were written
by the team in natural Spanish without those templates (short and long, misspelt, capitals, emoji,
Spain and Latin American usage, two topics at once), to measure what a model learned about the
problem words rather than the frames. They were split once, stratified, into two halves:

* ``dev``: used for every modelling choice, and by each training run to fit the ``needs_review``
  threshold (calibration);
* ``final``: never used for a choice; each training run reports its macro-F1 on it (``freeform``).

Keep both fixed: editing them after seeing a model's errors would make the figures meaningless.

The other two kinds, split the same way (``dev`` for choices and fitting, ``final`` only reported):

* ``frames_eval.jsonl`` (``load_frames``): the four training templates filled with problem phrases,
  products, carriers, cities and names the training set never uses, a third with a typo. A model that
  reads the problem words gets these right; one that keys on the training set's exact slot words
  does not. Each training run caps its ``needs_review`` threshold so that few of the ``dev`` rows are
  flagged (these are comments it should be sure of) and reports its macro-F1 on ``final`` (``frames``).
* ``registers_eval.jsonl`` (``load_registers``): 128 comments in registers neither other set has
  (voseo, Spain, Mexico and Chile slang, very short, long rants, emoji, all caps, two topics), with a
  ``register`` column. Only ``bench/freeform_generalisation.py`` reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import pandas as pd
from prefect import task

from tasks.common.records import parse_records

RESOURCE = "freeform_eval.jsonl"
FRAMES_RESOURCE = "frames_eval.jsonl"
REGISTERS_RESOURCE = "registers_eval.jsonl"


@dataclass(frozen=True)
class FreeformSets:
    dev: pd.DataFrame
    final: pd.DataFrame


def load_freeform() -> FreeformSets:
    """The hand-written free-form comments (kind 2)."""
    return _load_parts(RESOURCE)


def load_frames() -> FreeformSets:
    """The training templates with new problem phrases and typos (kind 1)."""
    return _load_parts(FRAMES_RESOURCE)


def load_registers() -> FreeformSets:
    """Free-form comments in registers the other sets lack (kind 3)."""
    return _load_parts(REGISTERS_RESOURCE)


def _load_parts(resource: str) -> FreeformSets:
    data = resources.files("tasks").joinpath("resources", resource).read_bytes()
    rows = parse_records(data, resource)
    part = rows.pop("part")
    return FreeformSets(
        rows[part == "dev"].reset_index(drop=True), rows[part == "final"].reset_index(drop=True)
    )


@task(name="load-freeform-eval")
def load_freeform_eval(categories: Sequence[str]) -> FreeformSets:
    """The two halves, keeping only the rows of the classes being trained."""
    return _of_classes(load_freeform(), categories)


@task(name="load-frames-eval")
def load_frames_eval(categories: Sequence[str]) -> FreeformSets:
    """The templates with new wording (kind 1), keeping only the rows of the classes being trained."""
    return _of_classes(load_frames(), categories)


def _of_classes(sets: FreeformSets, categories: Sequence[str]) -> FreeformSets:
    return FreeformSets(*(part[part["categoria"].isin(categories)] for part in (sets.dev, sets.final)))
