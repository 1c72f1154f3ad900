"""The versioned model registry (``models/<version>/`` + ``LATEST``) on a local Storage."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch

from helpers import tiny_bundle
from lstm_model.bundle import WEIGHTS_FILE
from lstm_model.predict import Classifier
from tasks.registry.versions import ModelFileError
from tasks.registry.versions import ModelNotFound
from tasks.registry.versions import is_complete
from tasks.registry.versions import load_bundle
from tasks.registry.versions import resolve_version
from tasks.registry.versions import set_latest
from tasks.registry.versions import write_version
from tasks.store.layout import COMPLETE
from tasks.store.layout import LATEST
from tasks.store.models import version_dir
from tasks.store.storage import Storage

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROBE_TEXTS = ["El pedido de cámara llegó dañado", "no acepta mi tarjeta", "el precio subió", ""]


@pytest.fixture(scope="module")
def trained():
    bundle, fitted = tiny_bundle()
    return fitted.model, bundle


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path))


class TestWriteVersion:
    def test_written_version_loads_back(self, storage, trained):
        _, bundle = trained
        write_version(storage, bundle.version, bundle.to_files())
        assert is_complete(storage, bundle.version)
        loaded = load_bundle(storage, bundle.version)
        assert loaded.version == bundle.version
        assert np.array_equal(
            Classifier.from_bundle(loaded).predict_proba(PROBE_TEXTS),
            Classifier.from_bundle(bundle).predict_proba(PROBE_TEXTS),
        )

    def test_manifest_lists_every_file_with_its_sha256(self, storage, trained):
        _, bundle = trained
        files = {**bundle.to_files(), "learning_curve.png": b"\x89PNG..."}
        write_version(storage, "v1", files)
        manifest = json.loads(storage.read_text(f"{version_dir('v1')}/{COMPLETE}"))
        assert manifest["version"] == "v1"
        assert manifest["files"] == {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        for name, data in files.items():
            assert storage.read_bytes(f"models/v1/{name}") == data

    def test_no_temporary_files_are_left(self, storage, trained, tmp_path):
        _, bundle = trained
        write_version(storage, "v1", bundle.to_files())
        assert not [p for p in (tmp_path / "models" / "v1").iterdir() if p.name.startswith(".tmp")]


class TestIncompleteVersion:
    def test_folder_without_complete_marker_is_not_loadable(self, storage, trained):
        _, bundle = trained
        for name, data in bundle.to_files().items():  # every file, but no _COMPLETE
            storage.write_bytes(f"models/v-half/{name}", data)
        assert not is_complete(storage, "v-half")
        with pytest.raises(ModelNotFound, match="v-half"):
            load_bundle(storage, "v-half")

    def test_cannot_point_latest_at_it(self, storage, trained):
        _, bundle = trained
        storage.write_bytes(f"models/v-half/{WEIGHTS_FILE}", bundle.to_files()[WEIGHTS_FILE])
        with pytest.raises(ModelNotFound, match="not a complete model version"):
            set_latest(storage, "v-half")
        assert not storage.exists(LATEST)

    def test_unknown_version(self, storage):
        with pytest.raises(ModelNotFound, match="not found"):
            load_bundle(storage, "does-not-exist")


class TestLatestPointer:
    def test_set_latest_then_resolve(self, storage, trained):
        _, bundle = trained
        write_version(storage, "v1", bundle.to_files())
        write_version(storage, "v2", bundle.to_files())
        set_latest(storage, "v1")
        assert storage.read_text(LATEST) == "v1\n"
        assert resolve_version(storage) == "v1"
        set_latest(storage, "v2")
        assert resolve_version(storage, "latest") == "v2"
        assert load_bundle(storage).version == bundle.version  # "latest" loads the pointed-at folder

    def test_explicit_version_is_returned_as_is(self, storage):
        assert resolve_version(storage, "v9") == "v9"

    def test_no_latest_yet(self, storage):
        with pytest.raises(ModelNotFound, match="no promoted model"):
            resolve_version(storage)
        with pytest.raises(ModelNotFound):
            load_bundle(storage)


class TestVerifiedFiles:
    """Loading checks every file against the SHA-256 its manifest recorded, and the class order."""

    @pytest.fixture
    def published(self, storage, trained):
        _, bundle = trained
        write_version(storage, "v1", bundle.to_files())
        return storage, bundle

    def test_manifest_records_the_label_order(self, published):
        from lstm_model.bundle import labels_digest

        storage, bundle = published
        manifest = json.loads(storage.read_text(f"{version_dir('v1')}/{COMPLETE}"))
        assert manifest["labels_sha256"] == labels_digest(bundle.labels)

    def test_a_truncated_vocab_is_refused_naming_file_and_version(self, published, tmp_path):
        storage, _ = published
        vocab = tmp_path / "models" / "v1" / "vocab.json"
        vocab.write_bytes(vocab.read_bytes()[: vocab.stat().st_size // 2])
        with pytest.raises(ModelFileError) as info:
            load_bundle(storage, "v1")
        message = str(info.value)
        assert message.startswith("model v1: vocab.json (") and "changed or truncated" in message
        assert "\n" not in message

    def test_reordered_labels_are_refused(self, published, tmp_path):
        storage, bundle = published
        meta_path = tmp_path / "models" / "v1" / "bundle.json"
        meta = json.loads(meta_path.read_text())
        meta["labels"] = list(reversed(meta["labels"]))
        meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2))
        with pytest.raises(ModelFileError, match=r"model v1: bundle\.json .* does not match the SHA-256"):
            load_bundle(storage, "v1")

        # ... and still refused when the manifest's file hash is "re-sealed" to match the edit:
        manifest_path = tmp_path / "models" / "v1" / COMPLETE
        manifest = json.loads(manifest_path.read_text())
        manifest["files"]["bundle.json"] = hashlib.sha256(meta_path.read_bytes()).hexdigest()
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(
            ModelFileError, match="model v1: the labels in bundle.json .* are not in the order"
        ):
            load_bundle(storage, "v1")

    def test_the_stems_model_file_is_verified_too(self, storage):
        """A version trained with both bag models: ``stems_model.pt`` loads, and is checked like the rest."""
        from lstm_model.bundle import STEMS_WEIGHTS_FILE

        bundle, _ = tiny_bundle(second_features="both")
        write_version(storage, "v2", bundle.to_files())
        loaded = load_bundle(storage, "v2")
        assert loaded.stems_state_dict is not None and loaded.stems_weight == 0.2
        np.testing.assert_array_equal(
            Classifier.from_bundle(loaded).predict_proba(PROBE_TEXTS),
            Classifier.from_bundle(bundle).predict_proba(PROBE_TEXTS),
        )
        state = {k: v.clone() for k, v in bundle.stems_state_dict.items()}
        state["bias"] += 1.0  # weights of the right shape, not the published ones
        other = io.BytesIO()
        torch.save(state, other)
        other = other.getvalue()
        storage.write_bytes(f"models/v2/{STEMS_WEIGHTS_FILE}", other)
        with pytest.raises(ModelFileError, match=f"model v2: {STEMS_WEIGHTS_FILE}"):
            load_bundle(storage, "v2")

    @pytest.mark.parametrize(
        "name", ["../outside_models_dir", "a/b", "..", "/etc", "v1/../v2", "", " v1", "v1\\x"]
    )
    def test_only_version_names_are_accepted(self, published, name):
        with pytest.raises(ModelNotFound, match="is not a model version name"):
            load_bundle(published[0], name)
        with pytest.raises(ModelNotFound, match="is not a model version name"):
            resolve_version(published[0], name)

    def test_latest_naming_a_path_is_refused(self, published):
        storage, _ = published
        storage.write_text(LATEST, "../../elsewhere\n")
        with pytest.raises(ModelNotFound, match="'../../elsewhere' is not a model version name"):
            load_bundle(storage)
