"""Errors a person can act on: the checks the CLI makes before it starts a flow, and one line per failure.

Some failures no retry can fix: no model to score with, a storage root that does not exist, a source
file that is not there, a host that cannot be resolved or reached, a bad flag. The CLI looks for them
before it starts Prefect (seconds of start-up, then task retries that cannot help) and says in one line
what is wrong and what to do. Any other failure is reported by the flow; the CLI then ends with one line
too. Tracebacks are for ``--verbose``; a flow run's are always in its Prefect logs.

Kept apart from ``cli.py`` so that the checks are plain functions a test can call, and so that the CLI
module stays about flags.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import urllib.parse
from typing import TYPE_CHECKING

from tasks.store.models import models_uri

if TYPE_CHECKING:
    from pydantic import ValidationError

    from flows.configs import ScoreConfig
    from flows.configs import TrainConfig
    from tasks.store.storage import Storage

CONNECT_TIMEOUT_S = 5.0


class ActionableError(Exception):
    """A failure no retry can fix, with what to do about it; the CLI prints it as one line."""

    def __init__(self, problem: str, todo: str) -> None:
        super().__init__(f"{problem}: {todo}")
        self.problem = problem
        self.todo = todo


def quiet_environment() -> None:
    """Defaults for the Prefect process the CLI is about to configure (set before Prefect is imported).

    The temporary server Prefect starts for a local run sends usage telemetry; offline it logs
    ``ERROR | prefect.server.services.telemetry - Failed to send telemetry`` on every run. The server's
    telemetry service is switched by ``server.analytics_enabled``; ``DO_NOT_TRACK`` covers the client
    side. Only defaults: a person who sets either keeps their value.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # On a busy 2-core machine the first start of that server (database migrations) can take longer
    # than Prefect's 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


class _WithoutTraceback(logging.Formatter):
    """Formats a record with another formatter, leaving out its traceback (a copy of the record is
    changed, so the API log handler still sends the traceback to the run's Prefect logs)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = copy.copy(record)
            record.exc_info = record.exc_text = record.stack_info = None
        return self.inner.format(record)


def _not_the_server_stop(record: logging.LogRecord) -> bool:
    """False for Prefect's "Stopping temporary server" line: it is logged at interpreter exit, after the
    CLI's summary or its one-line error, which should be the last thing a person reads."""
    return not (record.name == "prefect" and str(record.msg).startswith("Stopping temporary server"))


def tidy_console() -> None:
    """Prefect's console log lines without tracebacks, and without the exit-time server stop line.

    Call after Prefect is imported: it configures logging on import, and later set-ups only change
    levels, so the handler keeps this formatter and filter. Only the console changes: the run's Prefect
    logs keep everything.
    """
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, _WithoutTraceback
            ):
                handler.setFormatter(_WithoutTraceback(handler.formatter))
                handler.addFilter(_not_the_server_stop)


# ---------------------------------------------------------------------------------- before a flow starts


def _is_url(text: str) -> bool:
    return "://" in text


def check_local_path(uri: str, flag: str, what: str, todo: str) -> None:
    """A local path that does not exist is a typo or a missing mount, not something to retry."""
    if (_is_url(uri) and not uri.startswith("file://")) or set("*?[") & set(uri):
        return  # a URL (its host is checked apart) or a glob (matching nothing is not an error)
    path = uri.removeprefix("file://")
    if not os.path.exists(path):
        raise ActionableError(f"{what} {path} does not exist ({flag})", todo)


def check_glob_matches(storage: Storage, uri: str) -> None:
    """A glob that matches no file is as wrong as a folder that does not exist (a typo, a shell that
    expanded the pattern, a mount missing): said before the run, not read as "nothing new"."""
    if not set("*?[") & set(uri):
        return
    fs, path = storage.filesystem_for(uri)
    if not fs.glob(path):
        raise ActionableError(
            f"input {uri} matches no file (--input)",
            "check the pattern (quote it, so the shell does not expand it) or pass --input a folder",
        )


def check_host(
    url: str | None, flag: str, timeout: float = CONNECT_TIMEOUT_S, todo: str | None = None
) -> None:
    """The host of an http(s) URL resolves and accepts a connection (one attempt, ``timeout`` seconds).

    A name that does not resolve (offline, a typo) or a host that refuses or cannot be routed to fails
    here in well under a second, instead of after the fetch task's retries.
    """
    if not url:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ActionableError(
            f"cannot resolve host {host!r} of {flag} {url} ({exc.strerror})",
            todo or f"check the name and this machine's network, or pass {flag} a local path",
        ) from exc
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ActionableError(
            f"cannot connect to {host}:{port} of {flag} {url} ({exc.strerror or exc})",
            todo or f"check that the host is up and reachable from here, or pass {flag} a local path",
        ) from exc


def check_train(config: TrainConfig) -> None:
    """What ``comentarios train`` can check before it starts: the source is there and its host answers."""
    check_storage_folder(
        config.storage, "pass --storage a folder (it is created if missing) or s3://bucket/prefix"
    )
    check_local_path(
        config.source,
        "--source",
        "training source",
        "pass --source the path or URL of the training JSON (e.g. ../shared/data/comentarios_train.json)",
    )
    check_host(config.source, "--source")
    check_host(config.s3_endpoint_url, "--s3-endpoint-url")


def check_storage_folder(storage: str, todo: str) -> None:
    """A local ``--storage`` that names a file is refused as such (not as a folder that "does not
    exist", which sends a person looking for a missing folder)."""
    if _is_url(storage) and not storage.startswith("file://"):
        return
    path = storage.removeprefix("file://")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ActionableError(f"storage root {path} is a file, not a folder (--storage)", todo)


def check_score(config: ScoreConfig) -> None:
    """What ``comentarios score`` can check before it starts: the storage root and the model exist."""
    check_host(config.s3_endpoint_url, "--s3-endpoint-url")
    storage = config.storage_root()
    check_storage_folder(
        config.storage, "pass --storage the folder `comentarios train --storage ...` wrote its model to"
    )
    if storage.is_local and not storage.fs.isdir(storage.path()):
        raise ActionableError(
            f"storage root {config.storage} does not exist (--storage)",
            "pass --storage the folder `comentarios train --storage ...` wrote its model to",
        )
    if config.input:
        check_local_path(config.input, "--input", "input", "pass --input a folder or glob of Parquet batches")
        from tasks.scoring.input_guard import InputIsOutput
        from tasks.scoring.input_guard import check_input

        try:
            check_input(storage, config.input)
        except InputIsOutput as exc:
            raise ActionableError(
                str(exc), "pass --input the folder new batches land in (default: <storage>/incoming/)"
            ) from exc
        check_glob_matches(storage, config.input)
    from tasks.registry.versions import ModelNotFound  # imports Prefect and torch: after the quick checks
    from tasks.registry.versions import is_complete
    from tasks.registry.versions import resolve_version

    try:
        version = resolve_version(storage, config.model)
    except ModelNotFound as exc:
        if config.model != "latest":  # a name that is no version name (a path, say)
            raise ActionableError(
                f"{exc} (--model)", "pass --model latest or the name of a folder under models/"
            ) from exc
        raise ActionableError(
            f"no promoted model under {models_uri(storage)}",
            f"train one first (comentarios train --storage {config.storage}) or pass --model <version>",
        ) from exc
    if not is_complete(storage, version):
        raise ActionableError(
            f"model version {version!r} not found (or incomplete) under {models_uri(storage)} (--model)",
            "pass --model latest or the name of a folder under models/",
        )
    from tasks.registry.versions import ModelFileError
    from tasks.registry.versions import check_inside_models

    try:
        check_inside_models(storage, version)
    except ModelFileError as exc:
        raise ActionableError(str(exc), "pass --model a version stored under models/") from exc


# ------------------------------------------------------------------------------------- one line each


def validation_line(exc: ValidationError) -> str:
    """A pydantic error about a config, as flags: ``--val-fraction: Input should be less than 1 (got 2.0)``."""
    parts = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        names = [p for p in error["loc"] if isinstance(p, str)]  # list positions are not flags
        if not names:  # a check of several flags together names them in its message
            parts.append(message)
            continue
        flag = "--" + names[0].replace("_", "-")
        parts.append(f"{flag}: {message} (got {_short_input(error['input'])})")
    return "; ".join(parts)


def _short_input(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def one_line(exc: BaseException) -> str:
    """Any failure as one line: its type and its message with line breaks folded."""
    from pydantic import ValidationError

    if isinstance(exc, ActionableError):
        return str(exc)
    if isinstance(exc, ValidationError):
        return validation_line(exc)
    text = " ".join(str(exc).split())
    return f"failed: {type(exc).__name__}: {text}" if text else f"failed: {type(exc).__name__}"
