"""Commands that could score the project's own output, destroy outputs or put a broken model in
service are refused at once, in one line, before anything is read, written or deleted (issue 22).

* ``score --input`` that reaches a folder the storage's runs write (predictions/, review/, ledger/...),
  directly, through a symbolic link, as the storage root itself or as a glob; local and S3.
* Every number is checked before a run starts: ``--chunk-rows 99999999999999999999999 --rescore``
  used to delete the previous outputs and then fail with an OverflowError.
* ``models promote`` runs the checks scoring makes when it loads a version (every file's SHA-256,
  the manifest's version against the folder name, the weights loaded into the network) and refuses a
  version folder linked from outside ``models/``; scoring refuses that link too.
* ``train --categories a a``, ``--val-fraction 0.95``, ``score --claim-seconds inf`` and a
  ``--storage`` that is a file each end in one line naming the flag.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from test_cli_errors import assert_one_line
from test_cli_errors import comentarios

from helpers import MODEL_VERSION
from helpers import dataset_rows
from helpers import read_table
from helpers import write_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest_plugins = ("s3_support",)


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _score(root: Path, **overrides):
    from flows.configs import ScoreConfig
    from flows.score import score_batches

    return score_batches(ScoreConfig(storage=str(root), min_file_age=0, **overrides), return_state=True)


# ------------------------------------------------------------------------ 3. input = own output folder


def test_input_that_reaches_the_storages_own_folders_is_refused(root, prefect_harness, shared_dataset):
    write_batch(root, "lote.parquet", dataset_rows(shared_dataset, 6, "own"))
    assert _score(root).is_completed()
    before = _tree(root / "predictions")
    assert before, "the first run wrote predictions"
    link = root.parent / "link_to_predictions"
    link.symlink_to(root / "predictions", target_is_directory=True)

    cases = {
        str(root / "predictions"): "predictions",
        str(link): "predictions",  # a symbolic link is followed
        str(root): "predictions",  # the root is read recursively: it holds predictions/
        f"{root}/*/*.parquet": "predictions",  # a glob whose parts can match predictions/...
        f"{root}/incoming/../ledger": "ledger",
    }
    for given, folder in cases.items():
        line = assert_one_line(
            comentarios("score", "--storage", str(root), "--input", given, cwd=root),
            1,
            f"comentarios score: --input {given} reads {root / folder}",
            "score the project's own output",
        )
        assert "--input" in line
    assert _tree(root / "predictions") == before

    # A deployment's parameters skip the CLI: the flow refuses the input itself, before any task.
    state = _score(root, input=str(root / "predictions"))
    assert state.is_failed() and "reads" in state.message and "predictions" in state.message
    assert _tree(root / "predictions") == before


def test_which_inputs_reach_an_own_folder(root):
    from tasks.scoring.input_guard import reached_own_folder
    from tasks.store.layout import OWN_FOLDERS
    from tasks.store.storage import Storage

    storage = Storage(str(root))
    (root / "incoming" / "2026").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    for fine in [
        root / "incoming",
        root / "incoming" / "2026",
        f"{root}/incoming/*.parquet",
        f"{root}/incoming/**",
        root / "elsewhere",
        root.parent / "other_storage",
    ]:
        assert reached_own_folder(storage, str(fine)) is None, fine
    for folder in OWN_FOLDERS:
        assert reached_own_folder(storage, f"{root}/{folder}/") == str(root / folder)
        assert reached_own_folder(storage, f"{root}/{folder}/date=2026-01-01/part.parquet") == str(
            root / folder
        )
    assert reached_own_folder(storage, f"{root}/**/*.parquet") is not None
    assert reached_own_folder(storage, f"{root}/[pr]*") is not None
    assert reached_own_folder(storage, f"{root}/*.parquet") is None  # files beside the folders only
    # the folder names of the modules that write them
    from tasks.store.layout import CLAIMS
    from tasks.store.layout import LEDGER
    from tasks.store.layout import MODELS
    from tasks.store.layout import PREDICTIONS
    from tasks.store.layout import REJECTED
    from tasks.store.layout import REVIEW
    from tasks.store.layout import SUMMARIES

    for written in (LEDGER, CLAIMS, PREDICTIONS, REJECTED, REVIEW, SUMMARIES, MODELS, "labels"):
        assert written.split("/")[0] in OWN_FOLDERS


def test_input_under_an_own_folder_on_s3_is_refused(s3_server, s3_prefix, tmp_path):
    from tasks.scoring.input_guard import reached_own_folder
    from tasks.store.storage import Storage

    store = s3_prefix / "store"
    s3_server.put(f"{s3_prefix.key}/store/predictions/part-0.parquet", b"not read")
    assert_one_line(
        comentarios(
            "score",
            "--storage",
            store,
            "--s3-endpoint-url",
            s3_server.endpoint,
            "--input",
            f"{store}/predictions/",
            cwd=tmp_path,
        ),
        1,
        f"--input {store}/predictions/ reads {store}/predictions",
    )
    storage = Storage(store, s3_server.endpoint)
    assert reached_own_folder(storage, f"{store}/incoming/") is None
    assert reached_own_folder(storage, f"{s3_prefix / 'other'}/predictions/") is None
    assert reached_own_folder(storage, f"{store}/*/part-0.parquet") == f"{store}/predictions"
    assert reached_own_folder(storage, store) == f"{store}/predictions"


# ------------------------------------------------------------- 4. numbers checked before any deletion


def test_numbers_out_of_range_fail_before_rescore_deletes_anything(root, prefect_harness, shared_dataset):
    write_batch(root, "lote.parquet", dataset_rows(shared_dataset, 6, "num"))
    assert _score(root).is_completed()
    before = _tree(root)

    assert_one_line(
        comentarios(
            "score", "--storage", str(root), "--rescore", "--chunk-rows", "99999999999999999999999", cwd=root
        ),
        1,
        "comentarios score: --chunk-rows: Input should be less than or equal to",
        "99999999999999999999999",
    )
    line = assert_one_line(
        comentarios(
            "score",
            "--storage",
            str(root),
            "--rescore",
            "--claim-seconds",
            "nan",
            "--min-file-age",
            "inf",
            "--inference-batch",
            "0",
            "--workers",
            "100000",
            cwd=root,
        ),
        1,
    )
    for flag in ("--claim-seconds", "--min-file-age", "--inference-batch", "--workers"):
        assert flag in line, line
    assert _tree(root) == before  # nothing deleted, nothing written
    assert len(read_table(root, "predictions")) == 6


# ----------------------------------------------------------------- 6. promote = the checks of loading


def _publish_copy(storage, name: str, edit=None) -> Path:
    """Publish the session's model again as version ``name`` (``edit`` changes its files first)."""
    from tasks.registry.versions import write_version

    folder = Path(storage.path("models", MODEL_VERSION))
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "_COMPLETE"}
    write_version(storage, name, edit(files) if edit else files)
    return Path(storage.path("models", name))


def _reseal(folder: Path) -> None:
    """Record the files' current SHA-256 in ``_COMPLETE``, as someone covering an edit would."""
    manifest = json.loads((folder / "_COMPLETE").read_text())
    manifest["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in manifest["files"]}
    (folder / "_COMPLETE").write_text(json.dumps(manifest))


def test_promote_refuses_what_scoring_could_not_load(root, capsys):
    import torch

    from flows.cli import main
    from tasks.registry.versions import current_latest
    from tasks.registry.versions import load_bundle
    from tasks.store.storage import Storage

    storage = Storage(str(root))

    def promote(version: str) -> tuple[int, str]:
        code = main(["models", "promote", version, "--storage", str(root), "--reason", "test"])
        err = capsys.readouterr().err.rstrip("\n").splitlines()
        assert code == 0 or len(err) == 1, err
        return code, err[-1] if err else ""

    weights = _publish_copy(storage, "v-weights") / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-100] + b"\0" * 100)
    meta = _publish_copy(storage, "v-meta") / "bundle.json"
    meta.write_text(meta.read_text().replace('"max_len": ', '"max_len": 1'))
    evaluation = _publish_copy(
        storage, "v-eval", lambda f: {**f, "eval.parquet": b"the rows it is judged on"}
    )
    (evaluation / "eval.parquet").write_bytes(b"easier rows")
    copied = root / "models" / "v-copied"
    shutil.copytree(_publish_copy(storage, "v-original"), copied)
    refit = _publish_copy(storage, "v-refit")  # weights of another network, manifest resealed
    state = torch.load(refit / "weights.pt", weights_only=True)
    key = next(k for k in state if k.endswith("weight"))
    state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    torch.save(state, refit / "weights.pt")
    _reseal(refit)
    outside = Storage(str(root.parent / "elsewhere"))
    Path(outside.path("models")).mkdir(parents=True)
    _publish_copy(storage, "v-linked")
    shutil.move(storage.path("models", "v-linked"), outside.path("models", "v-linked"))
    (root / "models" / "v-linked").symlink_to(outside.path("models", "v-linked"), target_is_directory=True)

    expected = {
        "v-weights": "weights.pt (",
        "v-meta": "bundle.json (",
        "v-eval": "eval.parquet (11 bytes) does not match",
        "v-copied": "manifest was written for version 'v-original'",
        "v-refit": "weights.pt does not fit the network",
        "v-linked": "is a link to",
    }
    for version, fragment in expected.items():
        code, line = promote(version)
        assert code == 1, version
        assert line.startswith(f"comentarios models: failed: ModelFileError: cannot promote {version}: "), (
            line
        )
        assert fragment in line, line
        assert current_latest(storage) == MODEL_VERSION  # LATEST never switched
    # scoring refuses the link too, before Prefect starts and in the flow's loading
    assert_one_line(
        comentarios("score", "--storage", str(root), "--model", "v-linked", cwd=root),
        1,
        "models/v-linked is a link to",
    )
    with pytest.raises(Exception, match="is a link to"):
        load_bundle(storage, "v-linked")

    _publish_copy(storage, "v-good")
    assert promote("v-good") == (0, "")
    assert current_latest(storage) == "v-good"


# --------------------------------------------------------------------- 9. flags refused in one line


def test_train_and_score_flags_refused_before_start(tmp_path, shared_dataset_path):
    source = str(shared_dataset_path)
    assert_one_line(
        comentarios("train", "--source", source, "--categories", "a", "a", "b", cwd=tmp_path),
        1,
        "comentarios train: --categories: 'a' given twice",
    )
    assert_one_line(
        comentarios("train", "--source", source, "--categories", "Logística", "logistica", cwd=tmp_path),
        1,
        "--categories: 'Logística' and 'logistica'",
    )
    assert_one_line(
        comentarios("train", "--source", source, "--val-fraction", "0.95", cwd=tmp_path),
        1,
        "comentarios train: --val-fraction 0.95 + --test-fraction 0.1 = 1.05 of the rows held out",
    )
    assert_one_line(
        comentarios("train", "--source", source, "--test-fraction", "0", cwd=tmp_path),
        1,
        "--test-fraction: Input should be greater than 0",
    )
    assert_one_line(
        comentarios("score", "--claim-seconds", "inf", cwd=tmp_path),
        1,
        "comentarios score: --claim-seconds: Input should be a finite number (got inf)",
    )
    a_file = tmp_path / "storage.txt"
    a_file.write_text("not a folder")
    for command in (["train", "--source", source], ["score"], ["models", "list"]):
        assert_one_line(
            comentarios(*command, "--storage", str(a_file), cwd=tmp_path),
            1,
            f"storage root {a_file} is a file, not a folder (--storage)",
        )
    assert a_file.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["storage.txt"]  # nothing created
