"""The hand-written free-form comments that ship with the project.

The training texts come from four sentence templates; these 280 comments (70 per class) were written
by the team in natural Spanish without those templates (short and long, misspelt, capitals, emoji,
Spain and Latin American usage, two topics at once), to measure what a model learned about the
problem words rather than the frames. They were split once, stratified, into two halves:

* ``dev``: used for every modelling choice, and by each training run to fit the ``needs_review``
  threshold (calibration);
* ``final``: never used for a choice; each training run reports its macro-F1 on it (``freeform``).

Keep both fixed: editing them after seeing a model's errors would make the figures meaningless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import pandas as pd
from prefect import task

from tasks.common.records import parse_records

RESOURCE = "freeform_eval.jsonl"


@dataclass(frozen=True)
class FreeformSets:
    dev: pd.DataFrame
    final: pd.DataFrame


def load_freeform() -> FreeformSets:
    data = resources.files("tasks").joinpath("resources", RESOURCE).read_bytes()
    rows = parse_records(data, RESOURCE)
    part = rows.pop("part")
    return FreeformSets(
        rows[part == "dev"].reset_index(drop=True), rows[part == "final"].reset_index(drop=True)
    )


@task(name="load-freeform-eval")
def load_freeform_eval(categories: Sequence[str]) -> FreeformSets:
    """The two halves, keeping only the rows of the classes being trained."""
    sets = load_freeform()
    return FreeformSets(*(part[part["categoria"].isin(categories)] for part in (sets.dev, sets.final)))
