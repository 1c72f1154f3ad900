"""Model bundles as files, and the versioned registry (``models/<version>/`` + ``LATEST``) on a local Storage."""

from __future__ import annotations

import hashlib
import io
import json
import pickle

import numpy as np
import pytest
import torch
from prefect.logging import disable_run_logger

from _torch_threads import one_torch_thread  # noqa: F401  (autouse fixture)
from conftest import comment_rows
from lstm_model.batching import encode_texts
from lstm_model.bundle import BUNDLE_FILES, META_FILE, SPLITS_FILE, VOCAB_FILE, WEIGHTS_FILE, ModelBundle
from lstm_model.model import LSTMClassifier, ModelConfig
from lstm_model.predict import Classifier
from lstm_model.tokenizer import tokenize_many
from lstm_model.training import TrainingConfig, train_classifier
from lstm_model.vocab import Vocabulary
from tasks.registry import (
    COMPLETE,
    LATEST,
    ModelNotFound,
    is_complete,
    load_bundle,
    promote_model,
    resolve_version,
    set_latest,
    version_dir,
    write_version,
)
from tasks.storage import Storage

SMALL = dict(embedding_dim=8, hidden_size=8, num_layers=2, lstm_dropout=0.1, head_sizes=(8, 4), head_dropout=0.1)
PROBE_TEXTS = [
    "El pedido de cámara llegó dañado",
    "no acepta mi tarjeta",
    "el precio subió",
    "",
    "palabras que el modelo nunca vio",
]


class _NotAWeight:
    """A pickled object that is not a tensor: loading it must need full unpickling."""

    def __reduce__(self):
        return (dict, ())


@pytest.fixture(scope="module")
def trained():
    """A small model trained for two epochs on the tiny labelled frame, and its bundle."""
    frame = comment_rows(16)
    labels = tuple(sorted(frame["categoria"].unique()))
    index = {label: i for i, label in enumerate(labels)}
    vocab = Vocabulary.build(tokenize_many(frame["comentario"]), prefix_chars=5)
    encoded = encode_texts(frame["comentario"].tolist(), vocab, max_len=16)
    y = frame["categoria"].map(index).to_numpy().copy()
    torch.manual_seed(0)
    model = LSTMClassifier(ModelConfig(vocab_size=len(vocab), num_classes=len(labels), **SMALL))
    train_classifier(model, encoded, y, encoded, y, TrainingConfig(epochs=2, batch_size=4, device="cpu"))
    bundle = ModelBundle.from_model(
        model, version="20250101T000000Z-abcdef12", vocab=vocab, labels=labels, max_len=16,
        data_fingerprint="ab" * 32, metrics={"test": {"macro_f1": 0.97}}, training={"epochs": 2},
        splits={"train": ["id-0", "id-1"], "val": ["id-2"], "test": ["id-3"]}, frame_tokens=["el", "pedid"],
    )
    return model, bundle


# ----------------------------------------------------------------------------------------------- bundle


class TestBundleRoundTrip:
    def test_to_files_writes_the_four_files(self, trained):
        _, bundle = trained
        files = bundle.to_files()
        assert set(files) == set(BUNDLE_FILES) == {WEIGHTS_FILE, VOCAB_FILE, META_FILE, SPLITS_FILE}
        assert all(isinstance(v, bytes) and v for v in files.values())

    def test_loaded_bundle_predicts_exactly_the_same_probabilities(self, trained):
        model, bundle = trained
        loaded = ModelBundle.from_files(bundle.to_files())
        original = Classifier(bundle).predict_proba(PROBE_TEXTS)
        again = Classifier(loaded).predict_proba(PROBE_TEXTS)
        assert np.array_equal(original, again)
        # ... and those are the trained model's own probabilities
        encoded = encode_texts(PROBE_TEXTS, bundle.vocab, bundle.max_len)
        model.eval()
        with torch.no_grad():
            direct = [
                torch.softmax(model(*_single(encoded, i)), dim=1)[0].numpy() for i in range(len(PROBE_TEXTS))
            ]
        np.testing.assert_allclose(again, np.stack(direct), rtol=0, atol=1e-6)
        assert np.allclose(again.sum(axis=1), 1.0)

    def test_metadata_survives(self, trained):
        _, bundle = trained
        loaded = ModelBundle.from_files(bundle.to_files())
        assert loaded.version == bundle.version
        assert loaded.model_config == bundle.model_config
        assert loaded.vocab == bundle.vocab and loaded.vocab.prefix_chars == 5
        assert loaded.labels == bundle.labels
        assert loaded.max_len == 16
        assert loaded.data_fingerprint == bundle.data_fingerprint
        assert loaded.metrics == bundle.metrics
        assert loaded.training == bundle.training
        assert loaded.splits == bundle.splits
        assert loaded.frame_tokens == ["el", "pedid"]

    def test_state_dict_is_detached_copy(self, trained):
        model, bundle = trained
        key = next(iter(bundle.state_dict))
        assert bundle.state_dict[key] is not model.state_dict()[key]
        assert torch.equal(bundle.state_dict[key], model.state_dict()[key])


def _single(encoded, i):
    start, length = encoded.starts[i], encoded.lengths[i]
    ids = torch.from_numpy(encoded.ids[start : start + length].copy())[None, :]
    return ids, torch.tensor([length])


class TestBundleWeightsOnly:
    def test_weights_file_loads_with_weights_only(self, trained):
        _, bundle = trained
        state = torch.load(io.BytesIO(bundle.to_files()[WEIGHTS_FILE]), weights_only=True)
        assert set(state) == set(bundle.state_dict)
        assert all(isinstance(v, torch.Tensor) for v in state.values())

    def test_from_files_refuses_arbitrary_pickles(self, trained):
        _, bundle = trained
        files = bundle.to_files()
        payload = io.BytesIO()
        torch.save({"weight": _NotAWeight()}, payload)
        files[WEIGHTS_FILE] = payload.getvalue()
        with pytest.raises(pickle.UnpicklingError):
            ModelBundle.from_files(files)


class TestBundleIncomplete:
    @pytest.mark.parametrize("missing", BUNDLE_FILES)
    def test_any_missing_file_is_a_value_error(self, trained, missing):
        _, bundle = trained
        files = bundle.to_files()
        del files[missing]
        with pytest.raises(ValueError, match="incomplete") as info:
            ModelBundle.from_files(files)
        assert missing in str(info.value)

    def test_empty_mapping(self):
        with pytest.raises(ValueError, match="incomplete"):
            ModelBundle.from_files({})


# --------------------------------------------------------------------------------------------- registry


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
        assert np.array_equal(Classifier(loaded).predict_proba(PROBE_TEXTS), Classifier(bundle).predict_proba(PROBE_TEXTS))

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


class TestPromotionGate:
    @pytest.fixture
    def two_versions(self, storage, trained):
        _, bundle = trained
        write_version(storage, "v-old", bundle.to_files())
        write_version(storage, "v-new", bundle.to_files())
        set_latest(storage, "v-old")
        return storage

    def test_promotes_when_macro_f1_reaches_threshold(self, two_versions):
        with disable_run_logger():
            assert promote_model.fn(two_versions, "v-new", 0.96, 0.95) is True
        assert resolve_version(two_versions) == "v-new"

    def test_promotes_at_exactly_the_threshold(self, two_versions):
        with disable_run_logger():
            assert promote_model.fn(two_versions, "v-new", 0.95, 0.95) is True
        assert resolve_version(two_versions) == "v-new"

    def test_miss_keeps_latest_unchanged(self, two_versions):
        with disable_run_logger():
            assert promote_model.fn(two_versions, "v-new", 0.9499, 0.95) is False
        assert two_versions.read_text(LATEST) == "v-old\n"
        assert is_complete(two_versions, "v-new")  # the new version is kept, only not promoted

    def test_miss_without_any_latest_writes_none(self, storage, trained):
        _, bundle = trained
        write_version(storage, "v1", bundle.to_files())
        with disable_run_logger():
            assert promote_model.fn(storage, "v1", 0.5, 0.95) is False
        assert not storage.exists(LATEST)

    def test_passing_score_on_incomplete_version_is_refused(self, storage):
        with disable_run_logger(), pytest.raises(ModelNotFound):
            promote_model.fn(storage, "v-missing", 1.0, 0.95)
        assert not storage.exists(LATEST)
