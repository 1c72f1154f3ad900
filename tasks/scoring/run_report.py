"""The report of one scoring run, for the person who looks at the nightly run in the morning.

Published twice with the same content: as the run's Prefect markdown artifact ``score-run-report`` and as
an HTML file ``<storage>/reports/runs/<time>-<run>.html`` (written through :class:`~tasks.store.storage.Storage`,
so on S3 as on disk). The page is built once as a list of blocks and rendered to both formats.

Sections, in this order (:data:`SECTIONS`):

* **Batches**: one row per batch, the key columns first (batch, status, rows in, predicted, rejected),
  then every other number of :class:`~tasks.scoring.outputs.BatchSummary`, found from its type hints: a count
  added to the summary shows up here by itself (:data:`KEY_COLUMNS` puts it among the first ones).
* **Class mix**: the predicted classes of this run, of the previous scoring days (``reports/batches/``,
  the last :data:`PREVIOUS_DAYS` days with batches) and of the training data (the class support of the
  model's test split, which is stratified like its training split), as a table and a chart.
* **Confidence**: the distribution of ``confianza`` over this run's predictions (binned file by file).
* **Unknown words**: the share of tokens the vocabulary lacks, this run against the training run's
  validation split.
* **Model**: the version that scored, and where its numbers come from.
"""

from __future__ import annotations

import html
import json
import math
import typing
from collections import Counter
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

import numpy as np
from prefect import get_run_logger
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from lstm_model.bundle import META_FILE
from tasks.common.charts import data_uri
from tasks.common.charts import grouped_bars_png
from tasks.common.charts import histogram_png
from tasks.scoring.outputs import BatchSummary
from tasks.scoring.outputs import confidence_edges
from tasks.scoring.score_file import BatchResult
from tasks.store.models import version_file
from tasks.store.models import version_uri
from tasks.store.reports import run_report_file
from tasks.store.storage import Storage
from tasks.store.tables import MISCLASSIFIED
from tasks.store.tables import PREDICTIONS
from tasks.store.tables import REJECTED
from tasks.store.tables import REVIEW
from tasks.store.tables import SUMMARIES
from tasks.store.tables import UNREADABLE
from tasks.store.tables import day_of
from tasks.store.tables import key_of
from tasks.store.tables import read_part
from tasks.store.tables import table_parts
from tasks.store.tables import table_uri

ARTIFACT_KEY = "score-run-report"
PREVIOUS_DAYS = 7
SECTIONS = ("Batches", "Class mix", "Confidence", "Unknown words", "Model")
# The first columns of the batches table, in order; every other number of BatchSummary follows.
KEY_COLUMNS = {
    "rows_in": "rows in",
    "rows_predicted": "predicted",
    "rows_rejected": "rejected",
    "rows_flagged": "flagged for review",
}


# ------------------------------------------------------------------------------------ page blocks


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    alt: str
    uri: str


Block = Heading | Text | Table | Image


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Iterable[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(map(_md_cell, block.headers)) + " |")
            lines.append("|" + "---|" * len(block.headers))
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            lines.append("")
        else:
            lines += [f"![{block.alt}]({block.uri})", ""]
    return "\n".join(lines)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
p { max-width: 70em; }
div.table { overflow-x: auto; }  /* a wide batches table scrolls instead of running off the page */
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; white-space: nowrap; }
th { background: #f3f3f3; }
img { max-width: 100%; }
"""


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace("%", "").replace(".", "", 1).lstrip("-").isdigit()


def to_html(blocks: Iterable[Block], title: str) -> str:
    esc = html.escape
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            body.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
            rows = "".join(
                "<tr>"
                + "".join(
                    f"<td style='text-align:{'right' if _is_number(c) else 'left'}'>{esc(c)}</td>"
                    for c in row
                )
                + "</tr>"
                for row in block.rows
            )
            body.append(
                f"<div class='table'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
            )
        else:
            body.append(f'<p><img alt="{esc(block.alt)}" src="{block.uri}"></p>')
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# ------------------------------------------------------------------------------------ the numbers


def _percent(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def _fmt(value: object, name: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2%}" if ("share" in name or name == "accuracy") else f"{value:.3f}"
    return str(value)


def numeric_fields(summary_type: type = BatchSummary) -> list[str]:
    """The numbers of :class:`BatchSummary` (ints and floats, optional or not), key columns first."""
    hints = typing.get_type_hints(summary_type)
    numbers = []
    for name, hint in hints.items():
        kinds = {a for a in typing.get_args(hint) if a is not type(None)} or {hint}
        if kinds <= {int, float} and bool not in kinds:
            numbers.append(name)
    return [*KEY_COLUMNS, *[n for n in numbers if n not in KEY_COLUMNS]]


def batch_table(results: Sequence[BatchResult], failed: Mapping[str, str]) -> Table:
    """One row per batch: key columns first, every other number of its summary after, the reason last."""
    columns = numeric_fields(next((type(r.summary) for r in results if r.summary), BatchSummary))
    headers = ("batch", "status", *[KEY_COLUMNS.get(c, c.replace("_", " ")) for c in columns], "reason")
    rows = []
    for r in results:
        counts = {"rows_in": r.rows_in, "rows_predicted": r.rows_predicted, "rows_rejected": r.rows_rejected}
        values = [_fmt(getattr(r.summary, c) if r.summary else counts.get(c), c) for c in columns]
        rows.append((r.batch, r.status, *values, r.reason or ""))
    for name, why in failed.items():
        rows.append((name, "failed", *[""] * len(columns), why))
    return Table(headers, tuple(rows))


def run_class_counts(results: Sequence[BatchResult]) -> Counter[str]:
    total: Counter[str] = Counter()
    for r in results:
        if r.summary:
            total.update(dict(r.summary.class_counts))
    return total


@dataclass(frozen=True)
class TrainingProfile:
    """What the model bundle says about its training data (``None``: not recorded in the bundle)."""

    class_counts: dict[str, int] | None
    unknown_share: float | None


def training_profile(meta: Mapping) -> TrainingProfile:
    """From ``bundle.json``: the class support of the test split (a stratified split, so the training
    split's mix to within rounding) and the unknown-token share of the validation split."""
    test = meta.get("metrics", {}).get("test")
    counts = {c["label"]: int(c["support"]) for c in test["per_class"]} if test else None
    return TrainingProfile(counts, meta.get("training", {}).get("val_unknown_share"))


NO_CLASS_ROW = "(no class: no readable word)"


def no_class_count(results: Sequence[BatchResult]) -> int:
    """Predicted rows given no class: a comment with no readable word (no token with a letter: emoji,
    digits, punctuation only) is written to ``predictions/`` with ``categoria_pred`` null and flagged
    ``no_readable_words``; the class counts of the batch summaries leave it out."""
    return sum(
        r.summary.rows_predicted - sum(n for _, n in r.summary.class_counts) for r in results if r.summary
    )


def no_class_note(with_class: int, no_class: int) -> str:
    """The words after "this run (N rows" that say why N is below the predicted count."""
    if not no_class:
        return ""
    return (
        f" with a class; {no_class:,} more of the {with_class + no_class:,} predicted rows have no readable "
        "word (no letter in any token: emoji, digits or punctuation only), get no class (categoria_pred is "
        "empty in predictions/) and are flagged for review as no_readable_words; they are in no share below"
    )


def class_mix_blocks(
    labels: Sequence[str],
    this_run: Mapping[str, int],
    previous: Mapping[str, int],
    previous_days: Sequence[str],
    training: Mapping[str, int] | None,
    no_class: int = 0,
) -> list[Block]:
    """The class mix table and chart. ``no_class``: this run's predicted rows given no class (no
    readable word), which the shares leave out and the text names, so that "this run" adding up to
    fewer rows than "predicted" is explained where the two numbers meet."""
    run_total, prev_total = sum(this_run.values()), sum(previous.values())
    train_total = sum(training.values()) if training else 0
    series = {
        "this run": [_percent(this_run.get(c, 0), run_total) for c in labels],
        f"previous {PREVIOUS_DAYS} scoring days": [_percent(previous.get(c, 0), prev_total) for c in labels],
        "training": [_percent(training.get(c, 0), train_total) if training else None for c in labels],
    }
    rows = tuple(
        (
            label,
            f"{this_run.get(label, 0):,}",
            *[_fmt(None if s[i] is None else s[i] / 100, "share") for s in series.values()],
        )
        for i, label in enumerate(labels)
    )
    if no_class:
        rows += ((NO_CLASS_ROW, f"{no_class:,}", *[""] * len(series)),)
    days = (
        " to ".join(sorted({previous_days[-1], previous_days[0]}))
        if previous_days
        else "none before this run"
    )
    blocks: list[Block] = [
        Text(
            f"Predicted classes: this run ({run_total:,} rows{no_class_note(run_total, no_class)}), the "
            f"previous {PREVIOUS_DAYS} scoring days in "
            f"{SUMMARIES}/ ({days}; {prev_total:,} rows), and the training data "
            + (
                "(class support of the model's stratified test split)."
                if training
                else "(not recorded in the model)."
            )
        ),
        Table(("class", "this run (rows)", *[f"{name} (%)" for name in series]), rows),
    ]
    if run_total:
        png = grouped_bars_png(labels, series, "Class mix: this run, previous days, training", "% of rows")
        blocks.append(Image("class mix chart", data_uri(png)))
    return blocks


def confidence_blocks(counts: np.ndarray, edges: np.ndarray, mean: float | None) -> list[Block]:
    total = int(counts.sum())
    if not total:
        return [Text("No rows were predicted in this run.")]
    below_half = int(counts[edges[:-1] < 0.5].sum())
    high = int(counts[edges[:-1] >= 0.9].sum())
    text = (
        f"{total:,} predictions; mean confianza {_fmt(mean)}; {below_half:,} ({below_half / total:.1%}) "
        f"below 0.5, {high:,} ({high / total:.1%}) at 0.9 or above."
    )
    png = histogram_png(counts, edges, "Confidence of this run's predictions", "confianza")
    return [Text(text), Image("confidence histogram", data_uri(png))]


def unknown_words_blocks(results: Sequence[BatchResult], training_share: float | None) -> list[Block]:
    weighted = [(r.summary.unknown_token_share, r.rows_predicted) for r in results if r.summary]
    weighted = [(share, n) for share, n in weighted if share is not None and n]
    rows = sum(n for _, n in weighted)
    run_share = sum(share * n for share, n in weighted) / rows if rows else None
    parts = [
        f"This run: {_fmt(run_share, 'share') or 'no tokens'} of tokens are not in the model's vocabulary "
        "(per-batch shares, weighted by rows predicted)",
        f"training (validation split): {_fmt(training_share, 'share') or 'not recorded'}",
    ]
    if run_share is not None and training_share:
        parts.append(f"{run_share / training_share:.1f}x the training share")
    return [Text("; ".join(parts) + ". Each batch's share is in the Batches table.")]


def build_report(
    *,
    when: datetime,
    storage_uri: str,
    version: str,
    labels: Sequence[str],
    results: Sequence[BatchResult],
    failed: Mapping[str, str],
    previous: Mapping[str, int],
    previous_days: Sequence[str],
    training: TrainingProfile,
    confidence_counts: np.ndarray,
    confidence_bin_edges: np.ndarray,
    model_uri: str,
) -> tuple[str, list[Block]]:
    """The report's title and blocks; pure (every number is passed in)."""
    scored = [r for r in results if r.status == "scored"]
    unreadable = [r for r in results if r.status == "unreadable"]
    predicted = sum(r.rows_predicted for r in results)
    mean_conf = (
        sum((r.summary.mean_confianza or 0) * r.rows_predicted for r in scored) / predicted
        if predicted
        else None
    )
    title = f"Scoring run {when:%Y-%m-%d %H:%M} UTC"
    blocks: list[Block] = [
        Heading(title, 1),
        Text(
            f"Model {version} · {len(scored)} batch(es) scored, {len(unreadable)} unreadable, "
            f"{len(failed)} failed · rows: {sum(r.rows_in for r in results):,} in, {predicted:,} predicted, "
            f"{sum(r.rows_rejected for r in results):,} rejected · storage {storage_uri}"
        ),
        Heading("Batches"),
    ]
    if results or failed:
        blocks.append(batch_table(results, failed))
    else:
        blocks.append(Text("No new batches: nothing was scored."))
    blocks += [
        Heading("Class mix"),
        *class_mix_blocks(
            labels,
            run_class_counts(results),
            previous,
            previous_days,
            training.class_counts,
            no_class=no_class_count(results),
        ),
        Heading("Confidence"),
        *confidence_blocks(confidence_counts, confidence_bin_edges, mean_conf),
        Heading("Unknown words"),
        *unknown_words_blocks(results, training.unknown_share),
        Heading("Model"),
        Text(
            f"Version {version} ({model_uri}). Training class mix: class support of its test split; "
            "training unknown share: its validation split (bundle.json)."
        ),
    ]
    return title, blocks


# ------------------------------------------------------------------------------ reading the storage


def previous_class_mix(
    storage: Storage, exclude_keys: set[str], days: int = PREVIOUS_DAYS
) -> tuple[Counter[str], list[str]]:
    """Predicted classes of the last ``days`` scoring days in ``reports/batches/`` (newest first),
    leaving out this run's batches."""
    files = [p for p in table_parts(storage, SUMMARIES) if key_of(p) not in exclude_keys]
    recent = sorted({day_of(p) for p in files}, reverse=True)[:days]
    total: Counter[str] = Counter()
    for rel in files:
        if day_of(rel) in recent:
            for counts in read_part(storage, rel, ["class_counts"]).column("class_counts").to_pylist():
                total.update(dict(counts or []))
    return total, recent


def tables_written(storage: Storage, results: Sequence[BatchResult]) -> dict[str, str]:
    """The output tables this run wrote rows to, with the URI an analyst opens."""
    summaries = [r.summary for r in results if r.summary]
    wrote = {
        PREDICTIONS: any(r.rows_predicted for r in results),
        REVIEW: any(s.rows_flagged for s in summaries),
        REJECTED: any(r.rows_rejected for r in results),
        UNREADABLE: any(r.status == "unreadable" for r in results),
        MISCLASSIFIED: any(s.misclassified_rows for s in summaries),
        SUMMARIES: bool(summaries),
    }
    return {table: table_uri(storage, table) for table, written in wrote.items() if written}


@task(name="publish-run-report", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def publish_run_report(
    storage: Storage, version: str, results: list[BatchResult], failed: dict[str, str]
) -> str | None:
    """Build the run's report and publish it as the run's markdown artifact; when the run looked at any
    batch, write it as HTML under ``reports/runs/`` too and return that file's URI.

    A run with nothing new only publishes the artifact: its page would be the same empty one every
    night, and a rerun with nothing new must leave the storage as it was.
    """
    from prefect.runtime import flow_run

    when = datetime.now(UTC)
    meta = json.loads(storage.read_text(version_file(version, META_FILE)))
    labels = meta["labels"]
    keys = {r.key for r in results}
    previous, days = previous_class_mix(storage, keys)
    edges = confidence_edges(len(labels))
    # Binned while the batches were scored (BatchTally): the predictions are not read back.
    counts = [r.confidence_counts for r in results if r.status == "scored" and r.confidence_counts]
    title, blocks = build_report(
        when=when,
        storage_uri=storage.uri(),
        version=version,
        labels=labels,
        results=results,
        failed=failed,
        previous=previous,
        previous_days=days,
        training=training_profile(meta),
        confidence_counts=np.sum(counts, axis=0) if counts else np.zeros(len(edges) - 1, dtype=np.int64),
        confidence_bin_edges=edges,
        model_uri=version_uri(storage, version),
    )
    uri = None
    if results or failed:
        rel = run_report_file(when, flow_run.get_id())
        uri = storage.uri(rel)
        blocks.append(Text(f"This report as HTML: {uri}"))
        storage.write_text(rel, to_html(blocks, title))
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=to_markdown(blocks),
        description=f"{title}: model {version}, {len(results) + len(failed)} batch(es)"
        + (f"; HTML copy {uri}" if uri else ""),
    )
    get_run_logger().info("Run report: %s", uri or f"artifact {ARTIFACT_KEY} only (nothing new)")
    return uri
