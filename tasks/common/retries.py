"""Which failures are worth retrying: transient storage and network errors, nothing else.

Prefect retries a task on any exception unless told otherwise. Retrying a permanent error only
delays the failure (a missing model took 35 s per batch, a file with duplicate columns the same):
a missing file, a permission error, a schema error or a bad model never heal by waiting. So the
tasks that touch storage retry only when :func:`is_transient` says the error is of the kind that
does heal: a refused or dropped connection, a timeout, throttling (429, ``SlowDown``) or a server
error (5xx).
"""

from __future__ import annotations

import errno
from typing import Any

_TRANSIENT_ERRNOS = {
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EPIPE,
    errno.EAGAIN,
    getattr(errno, "EREMOTEIO", errno.EIO),  # s3fs: S3 "InternalError"
}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
}


def _status_and_code(exc: BaseException) -> tuple[int | None, str | None]:
    """HTTP status and error code of botocore, aiohttp and httpx errors that carry a response."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status, response.get("Error", {}).get("Code")
    status = getattr(exc, "status", None) or getattr(response, "status_code", None)
    return (status if isinstance(status, int) else None), None


def _transient_classes() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from botocore import exceptions as boto

        classes += [boto.ConnectionError, boto.HTTPClientError, boto.IncompleteReadError]
    except ImportError:
        pass
    try:
        import aiohttp

        classes += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    except ImportError:
        pass
    try:
        import httpx

        classes.append(httpx.TransportError)
    except ImportError:
        pass
    try:
        from fsspec.exceptions import FSTimeoutError

        classes.append(FSTimeoutError)
    except ImportError:
        pass
    return tuple(classes)


def is_transient(exc: BaseException) -> bool:
    """True for errors that can heal by trying again: network, timeouts, throttling, 5xx.

    The whole chain of causes is looked at, since s3fs re-raises botocore's errors as ``OSError``
    with the original as the cause.
    """
    classes = _transient_classes()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, classes):
            return True
        status, code = _status_and_code(current)
        if code in _TRANSIENT_CODES or (status is not None and (status >= 500 or status == 429)):
            return True
        if isinstance(current, OSError) and current.errno in _TRANSIENT_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task run only when its error is transient."""
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:
            return False
    return isinstance(exc, BaseException) and is_transient(exc)
