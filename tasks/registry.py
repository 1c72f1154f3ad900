"""Versioned model bundles in storage: ``models/<version>/`` plus a ``models/LATEST`` pointer.

A version folder is complete only when its ``_COMPLETE`` manifest exists; it is written last, after
every other file, so a reader (or a crash half-way through publishing, on S3 as on disk) can never
load half a model. ``LATEST`` holds one version name and is replaced in a single write.
"""

from __future__ import annotations

import hashlib
import json

from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from lstm_model.bundle import BUNDLE_FILES
from lstm_model.bundle import MODEL_FILES
from lstm_model.bundle import ModelBundle
from tasks.storage import Storage

MODELS = "models"
LATEST = f"{MODELS}/LATEST"
COMPLETE = "_COMPLETE"


class ModelNotFound(LookupError):
    pass


def version_dir(version: str) -> str:
    return f"{MODELS}/{version}"


def write_version(storage: Storage, version: str, files: dict[str, bytes]) -> None:
    """Write every file of a version, then the manifest that marks it complete."""
    folder = version_dir(version)
    for name, data in files.items():
        storage.write_bytes(f"{folder}/{name}", data)
    manifest = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    storage.write_text(f"{folder}/{COMPLETE}", json.dumps({"version": version, "files": manifest}, indent=2))


def is_complete(storage: Storage, version: str) -> bool:
    return storage.exists(f"{version_dir(version)}/{COMPLETE}")


def set_latest(storage: Storage, version: str) -> None:
    if not is_complete(storage, version):
        raise ModelNotFound(f"cannot promote {version}: it is not a complete model version")
    storage.write_text(LATEST, version + "\n")


def resolve_version(storage: Storage, version: str = "latest") -> str:
    if version != "latest":
        return version
    if not storage.exists(LATEST):
        raise ModelNotFound(
            f"no promoted model under {storage.uri(MODELS)}: train one (comentarios train) or pass --model <version>"
        )
    return storage.read_text(LATEST).strip()


def load_bundle(storage: Storage, version: str = "latest") -> ModelBundle:
    resolved = resolve_version(storage, version)
    if not is_complete(storage, resolved):
        raise ModelNotFound(
            f"model version {resolved!r} not found (or incomplete) under {storage.uri(MODELS)}"
        )
    folder = version_dir(resolved)
    written = json.loads(storage.read_text(f"{folder}/{COMPLETE}"))["files"]
    names = [name for name in MODEL_FILES if name in written or name in BUNDLE_FILES]
    return ModelBundle.from_files({name: storage.read_bytes(f"{folder}/{name}") for name in names})


@task(name="resolve-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def resolve_model(storage: Storage, model: str) -> str:
    """The version a scoring run uses: ``model`` itself, or the one ``LATEST`` names."""
    version = resolve_version(storage, model)
    get_run_logger().info("Scoring with model %s", version)
    return version


@task(name="publish-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def publish_model(storage: Storage, bundle: ModelBundle, extra_files: dict[str, bytes]) -> str:
    """Write the bundle and its reports under ``models/<version>/``; returns the version's URI."""
    write_version(storage, bundle.version, {**bundle.to_files(), **extra_files})
    uri = storage.uri(version_dir(bundle.version))
    get_run_logger().info("Published model %s to %s", bundle.version, uri)
    return uri
