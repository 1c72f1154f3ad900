"""The folders a storage root's runs write, and the check that a scoring input never reads them.

``comentarios score --input <storage>/predictions`` would score the project's own output: every run
adds the same rows again (three runs: the same ids four times). The scoring input may be any folder,
file or glob **except** one that reaches into these folders: the check runs before Prefect starts
(``flows/errors.py``) and again at the start of the flow (a deployment's parameters skip the CLI).

How an input "reaches" a folder: a folder input is read recursively, so it reaches everything under
it (``--input <storage>`` reaches ``<storage>/predictions``); a glob reaches a folder when its parts
can match the folder's path, part by part (``**`` matches any depth); a file reaches the folder it
lies in. Local paths are compared with their symbolic links resolved (a link to ``predictions/`` is
``predictions/``), ``s3://`` URIs as bucket and key.

No heavy import here: the CLI calls it before Prefect and pandas are loaded.
"""

from __future__ import annotations

import fnmatch
import os
from typing import TYPE_CHECKING

from tasks.store.folders import own_folder_uris

if TYPE_CHECKING:
    from tasks.store.storage import Storage

_GLOB_CHARS = set("*?[")


class InputIsOutput(ValueError):
    """The scoring input reaches into one of the storage's own folders."""


def _resolved(fs_is_local: bool, path: str) -> str:
    return os.path.realpath(path) if fs_is_local else path.rstrip("/")


def _pattern_parts(fs_is_local: bool, path: str) -> list[str]:
    """The input as a list of glob parts: its fixed folder (symbolic links resolved) then the
    wildcard parts; a folder gets a trailing ``**`` (it is read recursively)."""
    path = path.rstrip("/") or "/"
    parts = path.split("/")
    first_glob = next((i for i, part in enumerate(parts) if _GLOB_CHARS & set(part)), None)
    if first_glob is None:
        base, rest = path, []
    else:
        base, rest = "/".join(parts[:first_glob]) or "/", parts[first_glob:]
    fixed = _resolved(fs_is_local, base)
    if not rest and fs_is_local and os.path.isdir(fixed):
        rest = ["**"]
    elif not rest and not fs_is_local:
        rest = ["**"]  # an S3 prefix or key: listed recursively when it is a prefix
    return [p for p in fixed.split("/") if p] + rest


def _can_reach(pattern: list[str], target: list[str]) -> bool:
    """Whether a path matching ``pattern`` can be ``target`` or lie under it."""
    for i, name in enumerate(target):
        if i >= len(pattern):
            return False  # the pattern ends above the target folder: a file beside it
        if pattern[i] == "**":
            return True
        if not fnmatch.fnmatchcase(name, pattern[i]):
            return False
    return True


def reached_own_folder(storage: Storage, input_uri: str) -> str | None:
    """The URI of the storage's own folder that ``input_uri`` reaches, or None when it reaches none."""
    fs, path = storage.filesystem_for(input_uri)
    if type(fs) is not type(storage.fs):
        return None  # another kind of store cannot hold this storage's folders
    local = storage.is_local
    root = _resolved(local, storage.path())
    pattern = _pattern_parts(local, path)
    root_parts = [p for p in root.split("/") if p]
    for folder, uri in own_folder_uris(storage).items():
        if _can_reach(pattern, [*root_parts, folder]):
            return uri
    return None


def check_input(storage: Storage, input_uri: str | None) -> None:
    """Raise :class:`InputIsOutput` when ``input_uri`` would read what this storage's runs wrote."""
    if not input_uri:
        return
    folder = reached_own_folder(storage, input_uri)
    if folder is not None:
        raise InputIsOutput(
            f"--input {input_uri} reads {folder}, a folder that runs on this storage write (scoring it "
            "would score the project's own output)"
        )
