"""Versioned model bundles in storage: ``models/<version>/`` plus a ``models/LATEST`` pointer.

A version folder is complete only when its ``_COMPLETE`` manifest exists; it is written last, after
every other file, so a reader (or a crash half-way through publishing, on S3 as on disk) can never
load half a model. ``LATEST`` holds one version name and is replaced in a single write.

The manifest records the SHA-256 of every file and a digest of the class order, and loading checks
both: a changed or truncated file, or labels reordered in ``bundle.json`` (which would silently
mislabel every row), is refused with a message naming the file and the version. Version names are
plain names (no path separators), so ``--model`` can only ever load from ``models/``.
"""

from __future__ import annotations

import hashlib
import json
import os

from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from lstm_model.bundle import BUNDLE_FILES
from lstm_model.bundle import META_FILE
from lstm_model.bundle import MODEL_FILES
from lstm_model.bundle import ModelBundle
from lstm_model.bundle import labels_digest
from lstm_model.bundle import labels_in_meta
from tasks.common.retries import retry_if_transient
from tasks.store.models import COMPLETE
from tasks.store.models import ModelNotFound
from tasks.store.models import check_version_name
from tasks.store.models import local_folders
from tasks.store.models import manifest_file
from tasks.store.models import models_uri
from tasks.store.models import read_latest
from tasks.store.models import version_file
from tasks.store.models import version_uri
from tasks.store.models import write_latest
from tasks.store.storage import Storage

__all__ = ["ModelNotFound", "check_version_name"]  # the registry's errors and names, from the store


class ModelFileError(ValueError):
    """A file of a model version is not what was published (changed, truncated, inconsistent)."""


def write_version(storage: Storage, version: str, files: dict[str, bytes]) -> None:
    """Write every file of a version, then the manifest that marks it complete."""
    for name, data in files.items():
        storage.write_bytes(version_file(version, name), data)
    manifest: dict = {
        "version": version,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    if META_FILE in files:  # the class order: a reordered bundle.json must not load
        manifest["labels_sha256"] = labels_digest(labels_in_meta(files[META_FILE]))
    storage.write_text(manifest_file(version), json.dumps(manifest, indent=2))


def is_complete(storage: Storage, version: str) -> bool:
    return storage.exists(manifest_file(version))


def set_latest(storage: Storage, version: str) -> None:
    """Point ``LATEST`` at ``version`` after the checks scoring makes when it loads it (every file's
    SHA-256, the class order, the manifest's version, the weights loaded into the network, no link
    out of ``models/``): a version that would fail every scoring run never goes into service."""
    if not is_complete(storage, version):
        raise ModelNotFound(f"cannot promote {version}: it is not a complete model version")
    try:
        load_bundle(storage, version)
        _check_other_files(storage, version)
    except ModelFileError as exc:
        raise ModelFileError(f"cannot promote {version}: {exc}") from None
    write_latest(storage, version)


def _check_other_files(storage: Storage, version: str) -> None:
    """The files loading does not read (``eval.parquet``, which later promotions are judged on; the
    reports) against their SHA-256 in the manifest too: a version goes into service as published."""
    manifest = json.loads(storage.read_text(manifest_file(version)))
    for name, digest in manifest["files"].items():
        if name in MODEL_FILES:
            continue  # checked by load_bundle
        try:
            data = storage.read_bytes(version_file(version, name))
        except FileNotFoundError:
            raise ModelFileError(f"model {version}: {name} is missing") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ModelFileError(
                f"model {version}: {name} ({len(data):,} bytes) does not match the SHA-256 recorded in "
                f"{COMPLETE} when it was published: the file was changed or truncated"
            )


def resolve_version(storage: Storage, version: str = "latest") -> str:
    if version != "latest":
        return check_version_name(version)
    latest = read_latest(storage)
    if latest is None:
        raise ModelNotFound(
            f"no promoted model under {models_uri(storage)}: train one (comentarios train) or pass --model <version>"
        )
    return check_version_name(latest)


def current_latest(storage: Storage) -> str | None:
    """The version ``LATEST`` names, None before any promotion."""
    return read_latest(storage)


def require_complete(storage: Storage, version: str) -> None:
    """Refuse a version that does not exist or whose ``_COMPLETE`` was never written."""
    if not is_complete(storage, version):
        raise ModelNotFound(
            f"model version {version!r} not found (or incomplete) under {models_uri(storage)}"
        )


def check_inside_models(storage: Storage, version: str) -> None:
    """Refuse a version folder, or a file in it, that is a symbolic link leading out of ``models/``.

    The hashes only say the files are what the manifest lists; a link (``models/v9 -> /tmp/x``) would
    let whoever writes elsewhere put a model in service. Only local folders have links; ``models/``
    itself may be a link (a mounted disk): what counts is where it resolves to.
    """
    if not storage.is_local:
        return
    models, folder = local_folders(storage, version)
    models = os.path.realpath(models)
    for path in [folder, *(os.path.join(folder, name) for name in sorted(os.listdir(folder)))]:
        real = os.path.realpath(path)
        if os.path.commonpath([models, real]) != models or real == models:
            raise ModelFileError(
                f"model {version}: {os.path.relpath(path, storage.path())} is a link to {real}, outside "
                f"{models_uri(storage)}; copy the version into models/ instead of linking it"
            )


def _verified_files(storage: Storage, version: str) -> tuple[dict[str, bytes], dict]:
    """The bundle's files, each checked against the SHA-256 that its ``_COMPLETE`` manifest recorded."""
    require_complete(storage, version)
    check_inside_models(storage, version)
    try:
        manifest = json.loads(storage.read_text(manifest_file(version)))
        recorded = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"model {version}: {COMPLETE} is not a readable manifest ({exc})") from None
    if manifest.get("version") != version:
        raise ModelFileError(
            f"model {version}: its {COMPLETE} manifest was written for version "
            f"{manifest.get('version')!r}: the folder was copied or renamed, not published under this name"
        )
    files = {}
    for name in MODEL_FILES:  # every file a bundle must have, and the optional ones it was written with
        if name not in recorded:
            if name not in BUNDLE_FILES:
                continue
            raise ModelFileError(f"model {version}: {name} is not listed in its {COMPLETE} manifest")
        try:
            data = storage.read_bytes(version_file(version, name))
        except FileNotFoundError:
            raise ModelFileError(f"model {version}: {name} is missing") from None
        if hashlib.sha256(data).hexdigest() != recorded[name]:
            raise ModelFileError(
                f"model {version}: {name} ({len(data):,} bytes) does not match the SHA-256 recorded in "
                f"{COMPLETE} when it was published: the file was changed or truncated"
            )
        files[name] = data
    return files, manifest


def load_bundle(storage: Storage, version: str = "latest") -> ModelBundle:
    """The bundle of ``version`` (or of the promoted one), verified file by file and for consistency."""
    resolved = resolve_version(storage, version)
    files, manifest = _verified_files(storage, resolved)
    try:
        bundle = ModelBundle.from_files(files)
    except ValueError as exc:
        raise ModelFileError(f"model {resolved}: {exc}") from None
    digest = manifest.get("labels_sha256")
    if digest is not None and digest != labels_digest(bundle.labels):
        raise ModelFileError(
            f"model {resolved}: the labels in {META_FILE} ({', '.join(bundle.labels)}) are not in the order "
            "the model was trained and published with"
        )
    return bundle


@task(
    name="resolve-model",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
)
def resolve_model(storage: Storage, model: str) -> str:
    """The version a scoring run uses (``model`` itself, or the one ``LATEST`` names), loaded and
    verified once here so that a missing or damaged model fails the run before any batch is touched."""
    version = resolve_version(storage, model)
    load_bundle(storage, version)
    get_run_logger().info("Scoring with model %s (files verified)", version)
    return version


@task(
    name="publish-model",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_if_transient,
)
def publish_model(storage: Storage, bundle: ModelBundle, extra_files: dict[str, bytes]) -> str:
    """Write the bundle and its reports under ``models/<version>/``; returns the version's URI."""
    write_version(storage, bundle.version, {**bundle.to_files(), **extra_files})
    uri = version_uri(storage, bundle.version)
    get_run_logger().info("Published model %s to %s", bundle.version, uri)
    return uri
