"""End to end: the ``train-lstm`` flow and the ``comentarios train`` CLI on a temporary Prefect server.

Flow runs cost seconds each, so there are four: a clean run on the shared dataset, one on a broken
copy that also misses the promotion threshold, one on a file that is not this dataset, and the CLI
on that file. The model is shrunk through the flow's own parameters (one 32-unit LSTM layer,
3 epochs): the default 256/128x2 network takes minutes on a 2-core runner, and the template data
is learned just as well by the small one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import predicted_labels
from helpers import small_train_config as small_config
from lstm_model.bundle import MODEL_FILES
from lstm_model.bundle import NGRAMS_FILE
from lstm_model.predict import Classifier
from tasks.common.validation import DatasetError
from tasks.registry.promotion import read_promotions
from tasks.registry.versions import load_bundle
from tasks.store.storage import Storage

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Trained on the source alone: the second model reads character n-grams by default all the same.
VERSION_FILES = {
    *MODEL_FILES,
    NGRAMS_FILE,
    "rejected_rows.parquet",
    "learning_curve.png",
    "eval.parquet",
    "_COMPLETE",
}


def raw_records(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def version_folders(root: Path) -> list[Path]:
    """Version folders under models/ (not the promotions log, models/promotions/)."""
    models = root / "models"
    return (
        sorted(p for p in models.iterdir() if p.is_dir() and p.name != "promotions")
        if models.exists()
        else []
    )


def rejected_report(folder: Path):
    return pq.read_table(io.BytesIO((folder / "rejected_rows.parquet").read_bytes())).to_pandas()


# ------------------------------------------------------------------------------- (a) clean, promoted run


@pytest.fixture(scope="module")
def clean_run(prefect_harness, shared_dataset_path, tmp_path_factory):
    from flows.train import train_lstm

    root = tmp_path_factory.mktemp("storage-clean")
    summary = train_lstm(small_config(shared_dataset_path, root))
    return summary, root, raw_records(shared_dataset_path)


class TestCleanRunIsPromoted:
    def test_summary(self, clean_run):
        summary, root, records = clean_run
        assert summary.promoted is True
        assert summary.valid_rows + summary.rejected_rows == len(records)
        assert summary.metrics["test"]["macro_f1"] >= 0.99
        assert set(summary.metrics) == {"test", "freeform", "frames"}
        assert summary.model_uri == str(root / "models" / summary.version)

    def test_latest_names_the_version(self, clean_run):
        summary, root, _ = clean_run
        assert (root / "models" / "LATEST").read_text().strip() == summary.version
        assert [p.name for p in version_folders(root)] == [summary.version]
        (entry,) = read_promotions(Storage(str(root)))  # no champion yet: the threshold alone decided
        assert (entry["from"], entry["to"], entry["kind"]) == (None, summary.version, "automatic")
        assert summary.champion is None and "only the threshold applies" in entry["reason"]

    def test_storage_has_the_folders_the_readme_uses_next(self, clean_run):
        _, root, _ = clean_run
        for folder in ("incoming", "labels", "exports"):  # `cp my_batch.parquet X/incoming/` works
            assert (root / folder).is_dir(), folder


class TestCleanRunVersionFolder:
    def test_has_every_file(self, clean_run):
        summary, root, _ = clean_run
        folder = root / "models" / summary.version
        names = {p.name for p in folder.iterdir()}
        assert VERSION_FILES <= names
        assert not [n for n in names if n.startswith(".tmp")]
        manifest = json.loads((folder / "_COMPLETE").read_text())
        assert set(manifest["files"]) == VERSION_FILES - {"_COMPLETE"}

    def test_learning_curve_is_a_png(self, clean_run):
        summary, root, _ = clean_run
        assert (root / "models" / summary.version / "learning_curve.png").read_bytes()[:8] == PNG_MAGIC

    def test_artifacts_show_the_learning_curve_and_confusion_matrices_as_images(self, clean_run):
        """In the run's artifacts (the Prefect UI), not only in storage: PNGs inside the markdown."""
        import base64
        import re

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter
        from prefect.client.schemas.filters import ArtifactFilterKey

        summary, root, _ = clean_run
        keys = ["train-learning-curve", "train-confusion-matrix"]
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
            )
        mine = {a.key: a.data for a in artifacts if summary.version in (a.description or "")}
        assert set(mine) == set(keys)
        images = {
            key: [
                base64.b64decode(d) for d in re.findall(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
            ]
            for key, text in mine.items()
        }
        curve = (root / "models" / summary.version / "learning_curve.png").read_bytes()
        assert images["train-learning-curve"] == [curve]  # the same picture as in storage
        assert len(images["train-confusion-matrix"]) == 3  # test, freeform and frames
        assert all(png[:8] == PNG_MAGIC for png in images["train-confusion-matrix"])
        assert "| true \\ predicted |" in mine["train-confusion-matrix"]  # the counts as a table too

    def test_bundle_metrics_hold_test_and_freeform(self, clean_run):
        summary, root, _ = clean_run
        meta = json.loads((root / "models" / summary.version / "bundle.json").read_text())
        assert {"test", "freeform"} <= set(meta["metrics"])
        assert meta["metrics"]["test"]["macro_f1"] == pytest.approx(summary.metrics["test"]["macro_f1"])
        assert meta["version"] == summary.version
        assert meta["training"]["epochs"] == 3
        assert meta["model_config"]["hidden_size"] == 32

    def test_bundle_records_the_domain_phrases_it_trained_with(self, clean_run):
        import hashlib

        from tasks.training.phrases import builtin_data

        summary, root, _ = clean_run
        meta = json.loads((root / "models" / summary.version / "bundle.json").read_text())
        builtin = builtin_data()
        phrases = meta["data"]["domain_phrases"]
        assert phrases["source"] == "builtin" and phrases["left_out"] == 0
        assert phrases["phrases"] == len(builtin.splitlines())
        assert phrases["sha256"] == hashlib.sha256(builtin).hexdigest()
        assert meta["training"]["phrase_rows"] >= phrases["phrases"]  # each phrase at least once
        assert meta["training"]["phrase_share"] == 0.1

    def test_bundle_records_the_scored_comments_it_read(self, clean_run):
        summary, root, _ = clean_run
        meta = json.loads((root / "models" / summary.version / "bundle.json").read_text())
        # a new storage root: nothing scored yet, so nothing read, and the bound is recorded
        assert meta["data"]["scored_texts"] == {"rows": 0, "max_rows": 10_000, "files_read": 0,
                                                "files_skipped": 0, "flagged_left_out": 0,
                                                "known_left_out": 0}  # fmt: skip
        assert meta["training"]["unlabelled_rows"] == 0 and meta["training"]["self_train_weight"] == 1.0

    def test_splits_are_disjoint_and_cover_the_valid_rows(self, clean_run):
        summary, root, records = clean_run
        folder = root / "models" / summary.version
        splits = json.loads((folder / "splits.json").read_text())
        parts = [set(splits[name]) for name in ("train", "val", "test")]
        assert sum(len(p) for p in parts) == summary.valid_rows
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        rejected = set(rejected_report(folder)["id"].dropna().astype(str))
        assert set.union(*parts) == {str(r["id"]) for r in records} - rejected

    def test_rejected_report_is_readable(self, clean_run):
        summary, root, _ = clean_run
        report = rejected_report(root / "models" / summary.version)
        assert len(report) == summary.rejected_rows
        assert {"comentario", "rule", "reason", "source_file"} <= set(report.columns)

    def test_eval_rows_are_the_test_split(self, clean_run):
        summary, root, _ = clean_run
        folder = root / "models" / summary.version
        rows = pq.read_table(folder / "eval.parquet").to_pandas()
        assert set(rows["set"]) == {"test"}
        assert sorted(rows["id"]) == sorted(json.loads((folder / "splits.json").read_text())["test"])

    def test_latest_bundle_classifies_training_texts(self, clean_run):
        summary, root, records = clean_run
        bundle = load_bundle(Storage(str(root)))
        assert bundle.version == summary.version
        sample = records[:40]
        predicted = predicted_labels(Classifier.from_bundle(bundle), [r["comentario"] for r in sample])
        assert sum(p == r["categoria"] for p, r in zip(predicted, sample, strict=True)) >= 38


# --------------------------------------------- (b)+(d) broken rows in a JSON Lines copy, threshold missed


BROKEN = {  # row position in the copy -> (field, bad value, rule)
    0: ("comentario", None, "comentario_missing"),
    1: ("categoria", "otra", "categoria_invalid"),
    2: ("sentimiento", 3.0, "sentimiento_out_of_range"),
}
DUPLICATED = (3, 4)  # row 4 gets row 3's id: both copies are rejected
COPY_ROWS = 400


@pytest.fixture(scope="module")
def broken_run(prefect_harness, shared_dataset_path, tmp_path_factory):
    from flows.train import train_lstm

    records = raw_records(shared_dataset_path)[:COPY_ROWS]
    expected: dict[str, str] = {}
    for position, (column, value, rule) in BROKEN.items():
        records[position][column] = value
        expected[records[position]["id"]] = rule
    records[DUPLICATED[1]]["id"] = records[DUPLICATED[0]]["id"]
    expected[records[DUPLICATED[0]]["id"]] = "id_duplicate"

    source = tmp_path_factory.mktemp("source") / "comentarios.jsonl"
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    root = tmp_path_factory.mktemp("storage-broken")
    # TrainConfig caps promote_threshold at 1.0; model_copy skips validation to ask for the impossible.
    config = small_config(source, root).model_copy(update={"promote_threshold": 1.01})
    summary = train_lstm(config)
    return summary, root, records, expected


class TestBrokenRowsAreRejected:
    def test_trains_on_the_rest(self, broken_run):
        summary, _, records, expected = broken_run
        assert summary.rejected_rows == len(BROKEN) + 2
        assert summary.valid_rows == len(records) - summary.rejected_rows

    def test_report_names_each_broken_row_and_its_rule(self, broken_run):
        summary, root, _, expected = broken_run
        report = rejected_report(root / "models" / summary.version)
        assert len(report) == len(BROKEN) + 2
        assert report["source_file"].str.endswith("/comentarios.jsonl").all()  # the source it came from
        for row_id, rule in expected.items():
            rules = report.loc[report["id"] == row_id, "rule"].tolist()
            assert rules, f"{row_id} missing from rejected_rows.parquet"
            assert all(rule in r.split(",") for r in rules), (row_id, rules)
        assert report["reason"].str.len().gt(0).all()

    def test_no_broken_row_reaches_a_split(self, broken_run):
        summary, root, _, expected = broken_run
        splits = json.loads((root / "models" / summary.version / "splits.json").read_text())
        used = set(splits["train"]) | set(splits["val"]) | set(splits["test"])
        assert used.isdisjoint(expected)
        assert len(used) == summary.valid_rows


class TestThresholdMissKeepsVersionWithoutLatest:
    def test_not_promoted_and_no_latest(self, broken_run):
        summary, root, _, _ = broken_run
        assert summary.promoted is False
        assert not (root / "models" / "LATEST").exists()
        assert read_promotions(Storage(str(root))) == []
        assert "< threshold 1.0100" in summary.promotion_reasons[0]

    def test_version_folder_is_complete_and_loadable_by_name(self, broken_run):
        summary, root, _, _ = broken_run
        folder = root / "models" / summary.version
        assert VERSION_FILES <= {p.name for p in folder.iterdir()}
        assert load_bundle(Storage(str(root)), summary.version).version == summary.version


# ---------------------------------------------------------------- (c) not this dataset, (e) the CLI


@pytest.fixture(scope="module")
def file_without_comentario(shared_dataset_path, tmp_path_factory) -> Path:
    records = raw_records(shared_dataset_path)[:20]
    for record in records:
        del record["comentario"]
    path = tmp_path_factory.mktemp("bad-source") / "sin_comentario.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


class TestMissingColumnFailsTheFlow:
    def test_raises_dataset_error_and_publishes_nothing(
        self, prefect_harness, file_without_comentario, tmp_path
    ):
        from flows.train import train_lstm

        with pytest.raises(DatasetError, match="missing: comentario") as info:
            train_lstm(small_config(file_without_comentario, tmp_path))
        assert "\n" not in str(info.value)
        models = tmp_path / "models"
        assert not models.exists() or not any(models.iterdir())


class TestCliReportsOneLine:
    def test_exit_code_and_single_line_reason(
        self, prefect_harness, file_without_comentario, tmp_path, capsys
    ):
        from flows.cli import main

        code = main(
            ["train", "--source", str(file_without_comentario), "--storage", str(tmp_path), "--epochs", "1"]
        )
        assert code == 1
        # Prefect's own log lines (and the traceback) go to stderr first; the CLI ends with one line.
        err = capsys.readouterr().err.rstrip("\n").splitlines()
        assert [line for line in err if line.startswith("comentarios train:")] == err[-1:]
        assert err[-1].startswith(
            "comentarios train: failed: DatasetError: required column(s) missing: comentario"
        )
        assert not (tmp_path / "models").exists()

    def test_bad_flag_value_is_an_argparse_error(self, capsys):
        from flows.cli import main

        with pytest.raises(SystemExit) as info:
            main(["train", "--device", "tpu"])
        assert info.value.code == 2
        assert "--device" in capsys.readouterr().err


# ------------------------------------------------------------------ (f) too little data: nothing published


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("one_class", "too few valid rows to train: logistica 0, precios 0, servicio_cliente 0 (at least 10"),
        (
            "three_rows",
            "too few valid rows to train: ecommerce 1, logistica 1, precios 1, servicio_cliente 0",
        ),
    ],
)
def test_too_little_data_fails_with_one_line_and_publishes_nothing(
    prefect_harness, shared_dataset_path, tmp_path, capsys, case, reason
):
    from flows.cli import main

    records = raw_records(shared_dataset_path)
    chosen = [r for r in records if r["categoria"] == "ecommerce"] if case == "one_class" else []
    if case == "three_rows":
        chosen = [
            next(r for r in records if r["categoria"] == label)
            for label in ("ecommerce", "logistica", "precios")
        ]
    source = tmp_path / f"{case}.json"
    source.write_text(json.dumps(chosen, ensure_ascii=False), encoding="utf-8")

    code = main(["train", "--source", str(source), "--storage", str(tmp_path / "storage"), "--epochs", "1"])

    assert code == 1
    last = capsys.readouterr().err.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"comentarios train: failed: DatasetError: {reason}"), last
    assert not (tmp_path / "storage" / "models").exists()
