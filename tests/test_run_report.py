"""The scoring run's report: a markdown artifact and the same page as HTML under ``reports/runs/``.

Two scoring runs on a model whose test split had an uneven class mix (10/20/30/40 %), so the class-mix
section has all three columns filled on the second run. Plus the page builder on its own: key columns
first, a number added to the batch summary shows up by itself, and markdown and HTML say the same.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from datetime import UTC
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from helpers import LABELS
from helpers import dataset_rows
from helpers import tiny_bundle
from helpers import write_batch
from lstm_model.evaluation import evaluate
from tasks.scoring.outputs import BatchSummary
from tasks.scoring.run_report import NO_CLASS_ROW
from tasks.scoring.run_report import SECTIONS
from tasks.scoring.run_report import Table
from tasks.scoring.run_report import TrainingProfile
from tasks.scoring.run_report import batch_table
from tasks.scoring.run_report import build_report
from tasks.scoring.run_report import confidence_edges
from tasks.scoring.run_report import numeric_fields
from tasks.scoring.run_report import to_html
from tasks.scoring.run_report import to_markdown
from tasks.scoring.score_file import BatchResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAINING_MIX = (10, 20, 30, 40)  # test-split support per class of the model used here
VERSION = "20250202T000000Z-report00"


def summary(batch: str, **changes) -> BatchSummary:
    base = BatchSummary(
        batch=batch,
        batch_key="k-" + batch,
        model_version=VERSION,
        rows_in=10,
        rows_predicted=9,
        rows_rejected=1,
        class_counts=tuple(zip(LABELS, (3, 3, 2, 1), strict=True)),
        mean_confianza=0.8,
        unknown_token_share=0.1,
        training_unknown_token_share=0.05,
        labelled_rows=0,
        accuracy=None,
        misclassified_rows=0,
        rows_flagged=2,
        seconds=1.5,
        scored_at=datetime(2025, 2, 2, tzinfo=UTC),
    )
    return dataclasses.replace(base, **changes)


def result(s: BatchSummary) -> BatchResult:
    return BatchResult(
        s.batch, s.batch_key, "scored", s.rows_in, s.rows_predicted, s.rows_rejected, summary=s
    )


def headings(text: str, pattern: str) -> list[str]:
    return re.findall(pattern, text, flags=re.M)


def png_images(text: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)]


# ------------------------------------------------------------------------------- the page on its own


def test_key_columns_first_then_every_other_number_of_the_summary():
    fields = numeric_fields()
    assert fields[:3] == ["rows_in", "rows_predicted", "rows_rejected"]
    assert {"mean_confianza", "unknown_token_share", "accuracy", "misclassified_rows"} <= set(fields)
    assert "batch" not in fields and "scored_at" not in fields


def test_the_key_counts_come_first_and_a_count_added_to_the_summary_shows_up_by_itself():
    @dataclasses.dataclass(frozen=True)
    class WithMore(BatchSummary):
        translated_rows: int = 0  # a count some later change adds

    more = WithMore(**dataclasses.asdict(summary("a.parquet")), translated_rows=4)
    table = batch_table([result(more)], {"broken.parquet": "OSError: gone"})
    assert table.headers[:6] == ("batch", "status", "rows in", "predicted", "rejected", "flagged for review")
    assert "translated rows" in table.headers
    row = dict(zip(table.headers, table.rows[0], strict=True))
    assert (row["rows in"], row["predicted"], row["rejected"], row["flagged for review"]) == (
        "10",
        "9",
        "1",
        "2",
    )
    assert row["translated rows"] == "4"
    failed = dict(zip(table.headers, table.rows[1], strict=True))
    assert (failed["status"], failed["reason"]) == ("failed", "OSError: gone")


def test_markdown_and_html_say_the_same():
    edges = confidence_edges(len(LABELS))
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    counts[[2, -1]] = (2, 16)
    title, blocks = build_report(
        when=datetime(2025, 2, 2, 2, 0, tzinfo=UTC),
        storage_uri="/data/storage",
        version=VERSION,
        labels=LABELS,
        results=[result(summary("a.parquet")), result(summary("b.parquet", unknown_token_share=0.3))],
        failed={},
        previous={"ecommerce": 5, "precios": 5},
        previous_days=["2025-02-01", "2025-01-31"],
        training=TrainingProfile(dict(zip(LABELS, TRAINING_MIX, strict=True)), 0.05),
        confidence_counts=counts,
        confidence_bin_edges=edges,
        model_uri="/data/storage/models/" + VERSION,
    )
    markdown, page = to_markdown(blocks), to_html(blocks, title)
    assert headings(markdown, r"^## (.+)$") == list(SECTIONS) == headings(page, r"<h2>(.+?)</h2>")
    for block in blocks:
        if isinstance(block, Table):
            for row in block.rows:
                assert "| " + " | ".join(row) + " |" in markdown
                assert all(f">{cell}</td>" in page for cell in row if "'" not in cell)
    assert "18 predictions; mean confianza 0.800; 2 (11.1%) below 0.5, 16 (88.9%) at 0.9 or above" in markdown
    assert "This run: 20.00% of tokens" in markdown and "4.0x the training share" in markdown  # vs 5%
    assert len(png_images(markdown)) == len(png_images(page)) == 2  # class mix, confidence
    assert all(png.startswith(PNG_MAGIC) for png in png_images(page))


def _class_mix_text(results: list[BatchResult]) -> tuple[str, list[tuple[str, ...]]]:
    """The class-mix sentence and table rows of a report on ``results``."""
    edges = confidence_edges(len(LABELS))
    _, blocks = build_report(
        when=datetime(2025, 2, 2, 2, 0, tzinfo=UTC),
        storage_uri="/data/storage",
        version=VERSION,
        labels=LABELS,
        results=results,
        failed={},
        previous={},
        previous_days=[],
        training=TrainingProfile(None, None),
        confidence_counts=np.zeros(len(edges) - 1, dtype=np.int64),
        confidence_bin_edges=edges,
        model_uri="/data/storage/models/" + VERSION,
    )
    markdown = to_markdown(blocks)
    sentence = next(line for line in markdown.splitlines() if line.startswith("Predicted classes: this run"))
    mix = next(b for b in blocks if isinstance(b, Table) and b.headers[0] == "class")
    return sentence, list(mix.rows)


def test_the_class_mix_says_why_this_run_counts_fewer_rows_than_predicted():
    """Rows with no readable word are predicted (written, flagged) but get no class: the class mix
    counts 9 + 9 = 18 of the 10 + 11 = 21 predicted rows and says where the other 3 went."""
    results = [
        result(summary("a.parquet", rows_predicted=10)),  # class counts add up to 9
        result(summary("b.parquet", rows_in=12, rows_predicted=11)),
    ]
    sentence, rows = _class_mix_text(results)
    assert "this run (18 rows with a class; 3 more of the 21 predicted rows have no readable word" in sentence
    assert "no_readable_words" in sentence and "categoria_pred is empty" in sentence
    assert rows[-1] == (NO_CLASS_ROW, "3", "", "", "")
    assert [r[0] for r in rows[:-1]] == list(LABELS)


def test_the_class_mix_adds_no_note_when_every_predicted_row_has_a_class():
    sentence, rows = _class_mix_text([result(summary("a.parquet"))])  # 9 predicted, 9 with a class
    assert "this run (9 rows), the previous" in sentence and "readable" not in sentence
    assert NO_CLASS_ROW not in [r[0] for r in rows]


def test_the_learning_curve_has_whole_epochs_on_its_x_axis():
    """Three epochs: matplotlib's default ticks would be 1.00, 1.25, ... 3.00."""
    from lstm_model.training import EpochMetrics
    from tasks.common.charts import pyplot
    from tasks.training.reports import learning_curve_figure
    from tasks.training.reports import learning_curve_png

    for epochs in (1, 3, 7, 40):
        history = [EpochMetrics(e, 1.0 / e, 1.2 / e, 0.5, 0.4, 0.1) for e in range(1, epochs + 1)]
        fig = learning_curve_figure(history, best_epoch=epochs)
        try:
            for ax in fig.axes:
                low, high = ax.get_xlim()
                ticks = [t for t in ax.get_xticks() if low <= t <= high]
                assert ticks and all(float(t).is_integer() for t in ticks), (epochs, ticks)
                assert 1 in ticks or epochs > 10, (epochs, ticks)
                assert ax.get_xlabel() == "epoch"
        finally:
            pyplot().close(fig)
        assert learning_curve_png(history, epochs).startswith(PNG_MAGIC)


# ------------------------------------------------------------------------------------ in the flow


@pytest.fixture
def report_root(tmp_path) -> Path:
    """A storage root whose promoted model has test metrics with an uneven class support."""
    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version
    from tasks.store.storage import Storage

    truth = np.repeat(np.arange(len(LABELS)), TRAINING_MIX)
    metrics = {"test": evaluate(truth, truth, LABELS)}
    bundle, _ = tiny_bundle(VERSION, metrics=metrics)
    root = tmp_path / "storage"
    storage = Storage(str(root))
    write_version(storage, VERSION, bundle.to_files())
    set_latest(storage, VERSION)
    return root


def latest_report_artifact(html_uri: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter
    from prefect.client.schemas.filters import ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["score-run-report"]))
        )
    (mine,) = [a for a in artifacts if html_uri in (a.description or "")]
    return mine


def test_each_scoring_run_publishes_its_report(report_root, prefect_harness, shared_dataset):
    from flows.configs import ScoreConfig
    from flows.score import score_batches

    first = dataset_rows(shared_dataset, 24, "first").drop(columns=["categoria"])
    first.loc[5, "comentario"] = ""
    write_batch(report_root, "first.parquet", first)
    run1 = score_batches(ScoreConfig(storage=str(report_root)))
    second = dataset_rows(shared_dataset, 16, "second", start=30).drop(columns=["categoria"])
    second.loc[0, "comentario"] = "zzz qqq xyzzy"  # no word the model knows: flagged for review
    second.loc[1, "comentario"] = "\U0001f621\U0001f621 100% !!"  # no readable word: predicted, no class
    write_batch(report_root, "second.parquet", second)
    run2 = score_batches(ScoreConfig(storage=str(report_root)))

    pages = sorted((report_root / "reports" / "runs").glob("*.html"))
    assert [str(p) for p in pages] == sorted([run1.report_uri, run2.report_uri])
    page = Path(run2.report_uri).read_text(encoding="utf-8")
    artifact = latest_report_artifact(run2.report_uri)
    assert artifact.type == "markdown"
    markdown = artifact.data

    assert headings(page, r"<h2>(.+?)</h2>") == list(SECTIONS) == headings(markdown, r"^## (.+)$")
    assert f"Model {VERSION}" in markdown and f"Model {VERSION}" in page
    # batches: key columns first; this run's batch only
    assert "| batch | status | rows in | predicted | rejected | " in markdown
    assert "| second.parquet | scored | 16 | 16 | 0 | " in markdown
    assert "first.parquet" not in markdown.split("## Class mix")[0]
    # class mix: this run, the previous scoring day (run 1's batch), training (10/20/30/40 %)
    mix_rows = re.findall(
        r"^\| (\w+) \| (\d+) \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \|$", markdown, flags=re.M
    )
    assert [row[0] for row in mix_rows] == list(LABELS)
    assert [float(row[4]) for row in mix_rows] == [10.0, 20.0, 30.0, 40.0]
    assert sum(int(row[1]) for row in mix_rows) == 15  # the 16th row has no readable word, no class
    assert "this run (15 rows with a class; 1 more of the 16 predicted rows have no readable word" in markdown
    assert f"| {NO_CLASS_ROW} | 1 |" in markdown
    assert sum(float(row[3]) for row in mix_rows) == pytest.approx(100, abs=0.1)  # run 1: 23 rows
    assert "23 rows), and the training data" in markdown
    # confidence and unknown words
    assert "16 predictions; mean confianza" in markdown
    assert "of tokens are not in the model's vocabulary" in markdown
    # the pictures: class mix and confidence, as PNGs in both
    for text in (markdown, page):
        images = png_images(text)
        assert len(images) == 2 and all(png.startswith(PNG_MAGIC) for png in images)
    assert run2.rows_flagged > 0  # flagged rows go to review/ too
    assert run2.tables == {
        "predictions": str(report_root / "predictions"),
        "review": str(report_root / "review"),
        "reports/batches": str(report_root / "reports" / "batches"),
    }
    assert run1.tables["errors/rejected"] == str(report_root / "errors" / "rejected")


def test_a_run_with_nothing_new_publishes_only_the_artifact(report_root, prefect_harness):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter
    from prefect.client.schemas.filters import ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from flows.configs import ScoreConfig
    from flows.score import score_batches

    run = score_batches(ScoreConfig(storage=str(report_root)))
    assert run.report_uri is None and run.tables == {}
    assert not (report_root / "reports").exists()  # a rerun with nothing new leaves storage as it was
    with get_client(sync_client=True) as client:
        (latest,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["score-run-report"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert "No new batches: nothing was scored." in latest.data
    assert "No rows were predicted in this run." in latest.data
    assert headings(latest.data, r"^## (.+)$") == list(SECTIONS)


def test_a_report_that_cannot_be_written_does_not_hide_the_run(report_root, prefect_harness, shared_dataset):
    """Storage refuses the report (a file where its folder should be): the batch is scored, the run
    completes, and the summary says no report was written."""
    from flows.configs import ScoreConfig
    from flows.score import score_batches

    (report_root / "reports").mkdir()
    (report_root / "reports" / "runs").write_text("not a folder")
    write_batch(
        report_root, "lote.parquet", dataset_rows(shared_dataset, 8, "lote").drop(columns=["categoria"])
    )
    run = score_batches(ScoreConfig(storage=str(report_root)))
    assert run.scored == ["lote.parquet"] and run.rows_predicted == 8
    assert run.report_uri is None and "predictions" in run.tables
