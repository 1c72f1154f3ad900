"""The hand-written free-form evaluation set that ships with the project.

The training texts come from four sentence templates; these 120 comments (30 per class) were
written by the team in natural Spanish without those templates, to measure what a model learned
about the problem words rather than the frames. Keep it fixed: editing it after seeing a model's
errors would make the figure meaningless.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd
from prefect import task

from tasks.source import parse_records

RESOURCE = "freeform_eval.jsonl"


def load_freeform() -> pd.DataFrame:
    data = resources.files("tasks").joinpath("resources", RESOURCE).read_bytes()
    return parse_records(data, RESOURCE)


@task(name="load-freeform-eval")
def load_freeform_eval() -> pd.DataFrame:
    return load_freeform()
