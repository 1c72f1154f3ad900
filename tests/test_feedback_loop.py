"""The analysts' loop end to end, with real trainings: score -> ``review export`` -> fill in a copy ->
drop it into labels/ -> train (labels read, promoted) -> labels/ removed, train again (NOT promoted
over the champion trained with them) -> ``models promote`` switches LATEST anyway -> ``models list``.
Once on a local folder, once on S3 (moto).

The incoming comments are made of words the templated source never uses (``helpers.keyword_comments``):
the session's model flags nearly all of them (``no_known_words`` for a stems LSTM; the subword LSTM reads
their n-grams but is unsure: ``low_confidence``), and only a model that learnt them from the analysts'
labels can classify them, so the champion's ``labels`` evaluation rows tell the two trainings apart for sure.
"""

from __future__ import annotations

import io
import json
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest

pytest.register_assert_rewrite("s3_support")
from helpers import LABELS
from helpers import MODEL_VERSION
from helpers import keyword_comments
from helpers import put_model
from helpers import score
from helpers import small_train_config
from helpers import write_batch

pytest_plugins = ("s3_support",)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
LEFT_EMPTY = 4  # rows of the export the analyst does not label


def fill_in(export: bytes, truth: pd.DataFrame) -> pd.DataFrame:
    """What the analyst does in a spreadsheet: fill ``categoria`` of every row but the last few."""
    filled = pd.read_csv(io.BytesIO(export), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    filled["categoria"] = filled["id"].map(truth.set_index("id")["categoria"])
    filled.loc[filled.index[-LEFT_EMPTY:], "categoria"] = ""
    return filled


def cli(*args: str) -> None:
    from flows.cli import main

    assert main(list(args)) == 0, args


@pytest.fixture(scope="module")
def loop(prefect_harness, model_store, shared_dataset_path, tmp_path_factory):
    from flows.train import train_lstm
    from tasks.store.storage import Storage

    work = tmp_path_factory.mktemp("loop")
    root = work / "storage"
    storage = Storage(str(root))
    put_model(storage, model_store, latest=False)  # scores the batch; nothing is in service yet
    comments = keyword_comments()
    score(storage, write_batch(root, "2026-03-01.parquet", comments.drop(columns=["categoria"])))

    out = work / "review.csv"
    cli("review", "export", "--storage", str(root), "--out", str(out))
    filled = fill_in(out.read_bytes(), comments)
    slip = filled.index[0]  # a wrong label, corrected in a later file
    truth = filled.at[slip, "categoria"]
    filled.at[slip, "categoria"] = next(label for label in LABELS if label != truth)
    (root / "labels").mkdir()
    (root / "labels" / "review-2026-03-01.csv").write_bytes(filled.to_csv(index=False).encode("utf-8-sig"))
    fixes = [
        {"id": filled.at[slip, "id"], "comentario": filled.at[slip, "comentario"], "categoria": truth},
        {"id": "fix-blank", "comentario": "   ", "categoria": "precios"},
        {"id": "fix-unknown", "comentario": "quiero hablar con alguien", "categoria": "reclamos"},
    ]
    (root / "labels" / "review-2026-03-02-fixes.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in fixes), encoding="utf-8"
    )

    # No domain phrases: they name most of the keywords, and the test needs words only the labels teach
    with_labels = train_lstm(small_train_config(shared_dataset_path, root, domain_phrases="none"))
    shutil.rmtree(root / "labels")
    without = train_lstm(small_train_config(shared_dataset_path, root, domain_phrases="none"))
    return SimpleNamespace(
        root=root,
        storage=storage,
        export=out.read_bytes(),
        exported=len(filled),
        with_labels=with_labels,
        without=without,
        slip=(filled.at[slip, "id"], truth),
    )


def bundle_meta(root, version: str) -> dict:
    return json.loads((root / "models" / version / "bundle.json").read_text())


class TestReviewExport:
    def test_every_flagged_comment_once_in_a_csv_for_excel(self, loop):
        assert loop.export.startswith(b"\xef\xbb\xbf")
        rows = pd.read_csv(io.BytesIO(loop.export), encoding="utf-8-sig", dtype=str, keep_default_na=False)
        assert len(rows) >= 0.9 * len(keyword_comments()) and rows["id"].is_unique
        assert set(rows["id"]) <= set(keyword_comments()["id"])
        assert (rows["categoria"] == "").all()
        assert rows["review_reason"].str.match("no_known_words|low_confidence").all()


class TestTrainingWithTheFilledFile:
    def test_reads_the_labelled_rows_and_counts_the_empty_ones(self, loop):
        summary = loop.with_labels
        assert summary.label_rows == loop.exported - LEFT_EMPTY
        assert summary.unlabelled_rows == LEFT_EMPTY
        assert summary.valid_rows == 2000 + summary.label_rows
        data = bundle_meta(loop.root, summary.version)["data"]
        assert data["label_files"] == ["review-2026-03-01.csv", "review-2026-03-02-fixes.jsonl"]
        assert data["label_rows"] == summary.label_rows and data["conflicting_ids"] == 1

    def test_reads_the_scored_comments_but_not_the_flagged_or_labelled_ones(self, loop):
        """The first scoring's predictions/ are there: the flagged rows (the analysts' queue) and the
        comments now labelled are left out; the subword LSTM learns the rest without a label."""
        meta = bundle_meta(loop.root, loop.with_labels.version)
        scored = meta["data"]["scored_texts"]
        assert scored["files_read"] >= 1 and scored["max_rows"] == 10_000
        assert scored["flagged_left_out"] == loop.exported
        assert scored["rows"] + scored["known_left_out"] == len(keyword_comments()) - loop.exported
        assert meta["training"]["unlabelled_rows"] == scored["rows"]

    def test_bad_and_superseded_label_rows_are_in_the_rejected_report_with_their_file(self, loop):
        folder = loop.root / "models" / loop.with_labels.version
        report = pd.read_parquet(folder / "rejected_rows.parquet").set_index("id")
        assert loop.with_labels.rejected_rows == len(report) == 3
        slip_id, truth = loop.slip
        assert report.loc[slip_id, ["source_file", "rule"]].tolist() == [
            "review-2026-03-01.csv",
            "label_superseded",
        ]
        assert report.loc["fix-blank", ["source_file", "rule"]].tolist() == [
            "review-2026-03-02-fixes.jsonl",
            "comentario_blank",
        ]
        assert report.loc["fix-unknown", "rule"] == "categoria_invalid"
        splits = json.loads((folder / "splits.json").read_text())
        assert slip_id in {*splits["train"], *splits["val"], *splits["test"]}  # its later label is used
        assert "categoria" in report.loc[slip_id, "reason"] and f"-> {truth}" in report.loc[slip_id, "reason"]

    def test_label_test_rows_are_a_metric_set_and_kept_in_eval_parquet(self, loop):
        summary = loop.with_labels
        assert set(summary.metrics) == {"test", "labels", "freeform", "frames"}
        assert summary.metrics["labels"]["macro_f1"] >= 0.9  # it learnt words only the labels had
        rows = pd.read_parquet(loop.root / "models" / summary.version / "eval.parquet")
        assert rows.groupby("set").size().to_dict() == {"labels": 8, "test": 200}

    def test_it_has_both_bag_models_with_labels_and_without(self, loop):
        for version in (loop.with_labels.version, loop.without.version):
            meta = bundle_meta(loop.root, version)
            assert (meta["second_model_features"], meta["stems_model_weight"]) == ("both", 0.2)
            assert (loop.root / "models" / version / "char_ngrams.json").is_file()
            assert (loop.root / "models" / version / "stems_model.pt").is_file()

    def test_first_version_is_promoted_on_the_threshold_alone(self, loop):
        assert loop.with_labels.promoted and loop.with_labels.champion is None


class TestTrainingWithoutTheLabels:
    def test_is_not_promoted_over_the_champion_trained_with_them(self, loop):
        summary = loop.without
        assert summary.label_rows == 0 and summary.champion == loop.with_labels.version
        assert summary.promoted is False
        assert [
            r for r in summary.promotion_reasons if r.startswith("worse than champion") and " on labels:" in r
        ]

    def test_side_by_side_table_is_in_its_bundle(self, loop):
        promotion = bundle_meta(loop.root, loop.without.version)["promotion"]
        sets = {s["name"]: s for s in promotion["sets"]}
        assert promotion["promote"] is False and promotion["champion"] == loop.with_labels.version
        assert set(sets) == {"test", "labels", "freeform"}
        assert sets["labels"]["rows"] == 8 and sets["labels"]["champion_f1"] > sets["labels"]["challenger_f1"]
        assert sets["test"]["rows"] == 200 and sets["test"]["left_out"] == 0  # same source, same split

    def test_side_by_side_table_is_a_run_artifact(self, loop):
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter
        from prefect.client.schemas.filters import ArtifactFilterKey

        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["train-champion-challenger"]))
            )
        (artifact,) = [a for a in found if a.description.startswith(loop.without.version)]
        table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        assert [row["set"] for row in table] == ["test", "labels", "freeform"]
        assert [row["ok"] for row in table][1] is False and "do not promote" in artifact.description


class TestRegistryCommands:
    def test_promote_switches_latest_anyway_and_list_shows_both(self, loop, capsys):
        from tasks.registry.promotion import read_promotions

        assert (loop.root / "models" / "LATEST").read_text().strip() == loop.with_labels.version
        cli("models", "promote", loop.without.version, "--storage", str(loop.root), "--reason", "drill")
        assert (loop.root / "models" / "LATEST").read_text().strip() == loop.without.version
        auto, manual = read_promotions(loop.storage)
        assert (auto["to"], auto["kind"]) == (loop.with_labels.version, "automatic")
        assert (manual["from"], manual["to"], manual["kind"]) == (
            loop.with_labels.version,
            loop.without.version,
            "manual",
        )
        assert manual["reason"] == "drill" and manual["user"]

        capsys.readouterr()
        cli("models", "list", "--storage", str(loop.root))
        lines = {
            line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in capsys.readouterr().out.splitlines()
        }
        assert lines[loop.without.version].startswith("*")  # in service now
        assert not lines[loop.with_labels.version].startswith("*")
        assert "failed" in lines[loop.without.version] and "manual" in lines[loop.without.version]
        assert f"  {loop.with_labels.label_rows}  " in lines[loop.with_labels.version]
        assert MODEL_VERSION in lines  # the session's model, never promoted here

    def test_show_says_why_it_was_not_promoted(self, loop, capsys):
        capsys.readouterr()
        cli("models", "show", loop.without.version, "--storage", str(loop.root))
        out = capsys.readouterr().out
        assert f"gate:           failed against {loop.with_labels.version}" in out
        assert "worse than champion" in out and "labels" in out


def test_an_unreadable_label_file_does_not_stop_the_others_and_fails_the_run(
    prefect_harness, shared_dataset_path, tmp_path, capsys
):
    from flows.cli import main
    from tasks.registry.versions import current_latest
    from tasks.store.storage import Storage

    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "revision.csv").write_bytes(
        "id;comentario;categoria\n1;envío;logística\n".encode("cp1252")
    )
    (tmp_path / "labels" / "good.jsonl").write_text(
        json.dumps({"id": "g-1", "comentario": "el repartidor no vino", "categoria": "logistica"}) + "\n",
        encoding="utf-8",
    )
    (tmp_path / "labels" / "_urgente.csv").write_text("id,comentario,categoria\nu1,caro,precios\n")
    code = main(
        ["train", "--source", str(shared_dataset_path), "--storage", str(tmp_path), "--epochs", "1"]
        + ["--min-file-age", "0"]  # the label files were written just now
    )
    assert code == 1
    last = capsys.readouterr().err.rstrip("\n").splitlines()[-1]
    # Trained on the readable files and published, but not promoted: the unread file might correct
    # labels the version learned. The first version of this storage, so nothing is in service.
    assert current_latest(Storage(str(tmp_path))) is None
    (version,) = [p.name for p in (tmp_path / "models").iterdir() if (p / "bundle.json").exists()]
    assert last == (
        f"comentarios train: failed: LabelFilesUnreadable: 1 label file(s) not read; version {version} was "
        "trained without them (not promoted): label file revision.csv is not UTF-8 text (byte 29); save it "
        "as 'CSV UTF-8'"
    )
    bundle = json.loads((tmp_path / "models" / version / "bundle.json").read_text(encoding="utf-8"))
    assert not bundle["promotion"]["promote"]
    assert bundle["promotion"]["reasons"][0].startswith("label file(s) not read (revision.csv)")
    data = bundle["data"]
    assert data["label_files"] == ["good.jsonl"] and data["label_rows"] == 1
    assert [f["file"] for f in data["label_files_unreadable"]] == ["revision.csv"]
    assert data["label_files_skipped"] == ["_urgente.csv"]  # skipped by its name, and said so
    assert (tmp_path / "labels" / "revision.csv").exists()  # left for the analyst to fix
    assert main(["models", "show", version, "--storage", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "  not read:     label file revision.csv is not UTF-8" in shown
    assert "  skipped:      _urgente.csv" in shown
    assert "label file(s) not read (revision.csv)" in shown  # why it was not promoted
    assert main(["models", "promote", version, "--storage", str(tmp_path), "--reason", "checked"]) == 0
    assert current_latest(Storage(str(tmp_path))) == version


def test_the_loop_on_s3(prefect_harness, s3_server, s3_prefix, model_store, shared_dataset_path):
    from flows.configs import ScoreConfig
    from flows.score import score_batches
    from flows.train import train_lstm
    from tasks.registry.promotion import read_promotions
    from tasks.store.storage import Storage

    store, endpoint = s3_prefix / "store", s3_server.endpoint
    storage = Storage(store, endpoint)
    put_model(storage, model_store, latest=False)
    comments = keyword_comments(per_class=10)
    s3_server.put_parquet(f"{s3_prefix.key}/store/incoming/b1.parquet", comments.drop(columns=["categoria"]))
    scored = score_batches(
        # an S3 upload cannot be backdated: no minimum age for the batch just put there
        ScoreConfig(storage=store, s3_endpoint_url=endpoint, model=MODEL_VERSION, min_file_age=0)
    )
    assert scored.rows_flagged >= 0.9 * len(comments)

    cli(
        "review",
        "export",
        "--storage",
        store,
        "--s3-endpoint-url",
        endpoint,
        "--out",
        s3_prefix / "out/review.csv",
    )
    filled = fill_in(s3_server.get(f"{s3_prefix.key}/out/review.csv"), comments)
    # Saved by a spreadsheet in a Spanish locale: ';' and a BOM.
    s3_server.put(
        f"{s3_prefix.key}/store/labels/review.csv", filled.to_csv(index=False, sep=";").encode("utf-8-sig")
    )

    summary = train_lstm(small_train_config(shared_dataset_path, store, s3_endpoint_url=endpoint))
    assert summary.label_rows == len(filled) - LEFT_EMPTY and summary.unlabelled_rows == LEFT_EMPTY
    assert summary.promoted and storage.read_text("models/LATEST").strip() == summary.version

    cli(
        "models",
        "promote",
        MODEL_VERSION,
        "--storage",
        store,
        "--s3-endpoint-url",
        endpoint,
        "--reason",
        "rollback",
    )
    assert storage.read_text("models/LATEST").strip() == MODEL_VERSION
    assert [(e["to"], e["kind"]) for e in read_promotions(storage)] == [
        (summary.version, "automatic"),
        (MODEL_VERSION, "manual"),
    ]
    assert len(s3_prefix.keys("store/models/promotions")) == 2  # one object per promotion
