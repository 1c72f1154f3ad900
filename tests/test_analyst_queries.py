"""The README's "Questions analysts ask": every pandas and DuckDB block runs as written against a scored
storage, and gives the answer computed here another way.

The storage holds a batch scored yesterday and two scored today (the clock of the scoring module is set
back a day for the first: the only way to have a ``scored_date`` of yesterday without waiting a day),
with comments written yesterday and on other days, one batch without ``timestamp``, rejected rows and an
unreadable file. Every block runs (a block whose info string had a second word would be skipped; a test
checks there is none).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from helpers import dataset_rows
from helpers import read_table
from helpers import score
from helpers import write_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "### Questions analysts ask"


def readme_blocks() -> list[tuple[str, str, str]]:
    """(language, rest of the info string, code) of each fenced block in the analysts' section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", 1)]
    return [
        (lang, extra.strip(), code)
        for lang, extra, code in re.findall(r"```(\w+)([^\n]*)\n(.*?)```", section, flags=re.S)
    ]


def runnable(language: str) -> list[str]:
    return [code for lang, extra, code in readme_blocks() if lang == language and not extra]


class FixedClock(dt.datetime):
    """``datetime`` whose ``now`` is a day earlier: batches scored with it land in yesterday's partition."""

    @classmethod
    def now(cls, tz=None):
        return dt.datetime.now(tz) - dt.timedelta(days=1)


@pytest.fixture
def scored(root, storage, shared_dataset, monkeypatch, tmp_path):
    """The storage after yesterday's and today's runs; the test runs in the folder that holds it."""
    import tasks.scoring.score_file

    today = dt.datetime.now(dt.UTC)
    yesterday = today - dt.timedelta(days=1)
    old = today - dt.timedelta(days=5)
    early = dataset_rows(shared_dataset, 12, "early")
    early["timestamp"] = [(yesterday if i < 8 else old).isoformat() for i in range(12)]
    early.loc[3, "comentario"] = "   "
    late = dataset_rows(shared_dataset, 10, "late", start=20)
    late["timestamp"] = [(yesterday if i < 5 else today).isoformat() for i in range(10)]
    late.loc[[1, 6], "id"] = None
    untimed = dataset_rows(shared_dataset, 6, "untimed", start=40).drop(columns=["timestamp"])

    monkeypatch.setattr(tasks.scoring.score_file, "datetime", FixedClock)
    score(storage, write_batch(root, "early.parquet", early))
    monkeypatch.undo()
    score(storage, write_batch(root, "late.parquet", late))
    score(storage, write_batch(root, "untimed.parquet", untimed))
    score(storage, write_batch(root, "notes.txt", b"not parquet"))
    monkeypatch.chdir(tmp_path)
    assert root == tmp_path / "storage"
    return root, yesterday.date()


def test_every_block_runs():
    assert [(lang, extra) for lang, extra, _ in readme_blocks() if extra] == []
    assert len(runnable("python")) == 3 and len(runnable("sql")) == 3


def test_pandas_blocks_answer_the_questions(scored):
    root, yesterday = scored
    preds = read_table(root, "predictions")
    written = pd.to_datetime(preds["timestamp"], utc=True).dt.date
    expected_written = preds[written == yesterday].groupby("categoria_pred").size()
    expected_scored = preds[preds["batch"] == "early.parquet"].groupby("categoria_pred").size()
    assert expected_written.sum() == 7 + 4 and expected_scored.sum() == 11  # the data is as intended

    per_category: dict = {}
    rejected_rows: dict = {}
    not_trusted: dict = {}
    for code, namespace in zip(runnable("python"), (per_category, rejected_rows, not_trusted), strict=True):
        exec(compile(code, str(README), "exec"), namespace)

    assert per_category["by_comment_date"].to_dict() == expected_written.to_dict()
    assert per_category["by_scored_date"].to_dict() == expected_scored.to_dict()
    rejected = rejected_rows["rejected"]
    assert list(zip(rejected["batch"], rejected["row_number"], strict=True)) == [
        ("early.parquet", 3),
        ("late.parquet", 1),
        ("late.parquet", 6),
    ]
    assert rejected_rows["per_rule"].to_dict() == {"id_missing": 2, "comentario_blank": 1}
    assert list(rejected_rows["unreadable"]["batch"]) == ["notes.txt"]
    to_review = not_trusted["to_review"]
    assert sorted(to_review["id"]) == sorted(preds.loc[preds["needs_review"], "id"])
    assert to_review["confianza"].is_monotonic_increasing and to_review["review_reason"].notna().all()


def test_duckdb_blocks_give_the_same_answers(scored):
    root, yesterday = scored
    per_category, rejected, not_trusted = runnable("sql")
    con = duckdb.connect()
    set_utc, *selects = [s.strip() for s in per_category.split(";") if s.strip()]
    con.sql(set_utc)
    written, scored_day = (dict(con.sql(s).fetchall()) for s in selects)
    preds = read_table(root, "predictions")
    day = pd.to_datetime(preds["timestamp"], utc=True).dt.date
    assert written == preds[day == yesterday].groupby("categoria_pred").size().to_dict()
    assert scored_day == preds[preds["batch"] == "early.parquet"].groupby("categoria_pred").size().to_dict()

    rows, per_rule = (con.sql(s).fetchall() for s in rejected.split(";") if s.strip())
    assert [(batch, row) for batch, row, *_ in rows] == [
        ("early.parquet", 3),
        ("late.parquet", 1),
        ("late.parquet", 6),
    ]
    assert per_rule == [("id_missing", 2), ("comentario_blank", 1)]

    flagged = con.sql(not_trusted.strip().rstrip(";")).fetchall()
    assert sorted(row[0] for row in flagged) == sorted(preds.loc[preds["needs_review"], "id"])


def test_comentario_date_is_the_utc_day_of_timestamp(scored):
    root, _ = scored
    preds = read_table(root, "predictions")
    has_time = preds["timestamp"].notna()
    assert (
        preds.loc[has_time, "comentario_date"] == pd.to_datetime(preds.loc[has_time, "timestamp"]).dt.date
    ).all()
    assert preds.loc[~has_time, "comentario_date"].isna().all()
    assert set(preds.loc[~has_time, "batch"]) == {"untimed.parquet"}
