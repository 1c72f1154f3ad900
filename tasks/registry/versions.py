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
import re

from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from lstm_model.bundle import BUNDLE_FILES
from lstm_model.bundle import META_FILE
from lstm_model.bundle import MODEL_FILES
from lstm_model.bundle import ModelBundle
from lstm_model.bundle import labels_digest
from lstm_model.bundle import labels_in_meta
from tasks.common.layout import COMPLETE
from tasks.common.layout import LATEST
from tasks.common.layout import MODELS
from tasks.common.retries import retry_if_transient
from tasks.common.storage import Storage

_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ModelNotFound(LookupError):
    pass


class ModelFileError(ValueError):
    """A file of a model version is not what was published (changed, truncated, inconsistent)."""


def check_version_name(version: str) -> str:
    """``version`` if it is a plain version name: letters, digits, ``.``, ``_``, ``-``; no path, no ``..``."""
    if not _VERSION_NAME.fullmatch(version) or ".." in version:
        raise ModelNotFound(
            f"{version!r} is not a model version name (a folder name under models/, or 'latest'; no paths)"
        )
    return version


def version_dir(version: str) -> str:
    return f"{MODELS}/{check_version_name(version)}"


def write_version(storage: Storage, version: str, files: dict[str, bytes]) -> None:
    """Write every file of a version, then the manifest that marks it complete."""
    folder = version_dir(version)
    for name, data in files.items():
        storage.write_bytes(f"{folder}/{name}", data)
    manifest: dict = {
        "version": version,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    if META_FILE in files:  # the class order: a reordered bundle.json must not load
        manifest["labels_sha256"] = labels_digest(labels_in_meta(files[META_FILE]))
    storage.write_text(f"{folder}/{COMPLETE}", json.dumps(manifest, indent=2))


def is_complete(storage: Storage, version: str) -> bool:
    return storage.exists(f"{version_dir(version)}/{COMPLETE}")


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
    storage.write_text(LATEST, version + "\n")


def _check_other_files(storage: Storage, version: str) -> None:
    """The files loading does not read (``eval.parquet``, which later promotions are judged on; the
    reports) against their SHA-256 in the manifest too: a version goes into service as published."""
    folder = version_dir(version)
    manifest = json.loads(storage.read_text(f"{folder}/{COMPLETE}"))
    for name, digest in manifest["files"].items():
        if name in MODEL_FILES:
            continue  # checked by load_bundle
        try:
            data = storage.read_bytes(f"{folder}/{name}")
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
    if not storage.exists(LATEST):
        raise ModelNotFound(
            f"no promoted model under {storage.uri(MODELS)}: train one (comentarios train) or pass --model <version>"
        )
    return check_version_name(storage.read_text(LATEST).strip())


def current_latest(storage: Storage) -> str | None:
    """The version ``LATEST`` names, None before any promotion."""
    return storage.read_text(LATEST).strip() if storage.exists(LATEST) else None


def require_complete(storage: Storage, version: str) -> None:
    """Refuse a version that does not exist or whose ``_COMPLETE`` was never written."""
    if not is_complete(storage, version):
        raise ModelNotFound(
            f"model version {version!r} not found (or incomplete) under {storage.uri(MODELS)}"
        )


def check_inside_models(storage: Storage, version: str) -> None:
    """Refuse a version folder, or a file in it, that is a symbolic link leading out of ``models/``.

    The hashes only say the files are what the manifest lists; a link (``models/v9 -> /tmp/x``) would
    let whoever writes elsewhere put a model in service. Only local folders have links; ``models/``
    itself may be a link (a mounted disk): what counts is where it resolves to.
    """
    if not storage.is_local:
        return
    models = os.path.realpath(storage.path(MODELS))
    folder = storage.path(version_dir(version))
    for path in [folder, *(os.path.join(folder, name) for name in sorted(os.listdir(folder)))]:
        real = os.path.realpath(path)
        if os.path.commonpath([models, real]) != models or real == models:
            raise ModelFileError(
                f"model {version}: {os.path.relpath(path, storage.path())} is a link to {real}, outside "
                f"{storage.uri(MODELS)}; copy the version into models/ instead of linking it"
            )


def _verified_files(storage: Storage, version: str) -> tuple[dict[str, bytes], dict]:
    """The bundle's files, each checked against the SHA-256 that its ``_COMPLETE`` manifest recorded."""
    folder = version_dir(version)
    require_complete(storage, version)
    check_inside_models(storage, version)
    try:
        manifest = json.loads(storage.read_text(f"{folder}/{COMPLETE}"))
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
            data = storage.read_bytes(f"{folder}/{name}")
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
    uri = storage.uri(version_dir(bundle.version))
    get_run_logger().info("Published model %s to %s", bundle.version, uri)
    return uri
