"""S3 on loopback for the tests: a moto server, credentials in the environment, a flaky TCP proxy.

Loaded by ``test_s3_storage.py`` and ``test_s3_flows.py`` as a plugin (``pytest_plugins``), so a
session has one server. Every request goes through the real S3 REST API (boto3/s3fs -> HTTP -> moto)
on 127.0.0.1; nothing leaves the machine, and botocore never asks the EC2 metadata address for
credentials.

The project only ever passes an endpoint URL; credentials come from the environment, exactly as in
production. The key id and secret used here are long, unique strings so that a test can search every
object written under its prefix for them.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

BUCKET = "comentarios-test"
ACCESS_KEY = "AKIAS3TESTCOMENTARIOS"
SECRET_KEY = "s3-test-secret-" + uuid.uuid4().hex  # unique per session: found nowhere by chance

_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    # No ~/.aws files of whoever runs the tests (a profile there could point elsewhere).
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    bucket: str = BUCKET

    def client(self):
        """A boto3 client of its own: the 'other program' that uploads batches or checks what exists."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def fs(self):
        """An s3fs filesystem with no shared instance and no listings cache: always sees the store as it is."""
        import s3fs

        return s3fs.S3FileSystem(
            endpoint_url=self.endpoint, skip_instance_cache=True, use_listings_cache=False
        )

    def read_options(self) -> dict:
        """``storage_options`` for pandas/pyarrow readers: the endpoint (and, to show they can be passed, the keys)."""
        return {
            "endpoint_url": self.endpoint,
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "skip_instance_cache": True,
            "use_listings_cache": False,
        }

    # -- objects under a prefix ---------------------------------------------------------------------

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` (a key prefix, no bucket), via the S3 API itself."""
        client, keys = self.client(), []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(keys)

    def get(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def put_parquet(self, key: str, frame: pd.DataFrame | pa.Table) -> bytes:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.put(key, sink.getvalue())
        return sink.getvalue()

    def read_table(self, uri: str) -> pd.DataFrame:
        """An output table (hive-partitioned folder) as pandas, read the way an analyst would."""
        fs = self.fs()
        if not fs.exists(uri) or not [p for p in fs.find(uri) if p.endswith(".parquet")]:
            return pd.DataFrame()
        return pd.read_parquet(uri, storage_options=self.read_options())


@dataclass(frozen=True)
class S3Prefix:
    """A fresh folder of the test bucket for one test: ``s3://<bucket>/<uuid>``."""

    server: S3Server
    key: str  # "<uuid>", no bucket, no trailing slash

    @property
    def uri(self) -> str:
        return f"s3://{self.server.bucket}/{self.key}"

    def __truediv__(self, rel: str) -> str:
        return f"{self.uri}/{rel}"

    def keys(self, under: str = "") -> list[str]:
        """Keys relative to the prefix (``store/ledger/<key>.json``...)."""
        base = f"{self.key}/{under}".rstrip("/") + "/" if under else f"{self.key}/"
        return [k[len(self.key) + 1 :] for k in self.server.keys(base)]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto S3 server on a free loopback port for the session, with the test bucket and AWS env set."""
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")  # one INFO line per request otherwise
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    saved = {name: os.environ.get(name) for name in (*_ENV, *_UNSET)}
    for name in _UNSET:
        os.environ.pop(name, None)
    os.environ.update(_ENV)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = S3Server(f"http://127.0.0.1:{port}")
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3
    finally:
        server.stop()
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()  # instances bound to this endpoint are now useless
        werkzeug.setLevel(werkzeug_level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def s3_prefix(s3_server: S3Server) -> S3Prefix:
    return S3Prefix(s3_server, uuid.uuid4().hex)


def assert_no_credentials(prefix: S3Prefix) -> int:
    """No object under the prefix contains the access key id or the secret; returns how many were checked."""
    keys = prefix.server.keys(prefix.key + "/")
    for key in keys:
        data = prefix.server.get(key)
        assert SECRET_KEY.encode() not in data, f"the secret access key is written in s3://{BUCKET}/{key}"
        assert ACCESS_KEY.encode() not in data, f"the access key id is written in s3://{BUCKET}/{key}"
    return len(keys)


# --------------------------------------------------------------------------------------------------
# A TCP proxy between the project's S3 client and moto that can be made to fail part-way
# --------------------------------------------------------------------------------------------------


class FlakyProxy:
    """Forwards loopback TCP connections to ``upstream_port`` until it is tripped, then drops them.

    It trips when the client->server byte stream has shown ``trip_on`` for the ``trip_at``-th time
    (e.g. the request line of the third PUT of a predictions part): that request is never forwarded,
    every open connection is closed, and every new connection is accepted and closed at once, so the
    S3 endpoint looks dead to the client. :meth:`heal` makes it forward again.
    """

    def __init__(self, upstream_port: int, trip_on: bytes | None = None, trip_at: int = 1):
        self.upstream_port = upstream_port
        self.trip_on = trip_on
        self.trip_at = trip_at
        self.seen = 0
        self.down = threading.Event()
        self.tripped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._closing = False
        self._thread = threading.Thread(target=self._accept_loop, name="flaky-proxy", daemon=True)
        self._thread.start()

    # -- control ------------------------------------------------------------------------------------

    def trip(self) -> None:
        self.down.set()
        self.tripped.set()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            _close(sock)

    def heal(self) -> None:
        self.trip_on = None
        self.down.clear()

    def close(self) -> None:
        self._closing = True
        self.trip()
        _close(self._listener)
        self._thread.join(timeout=5)

    # -- forwarding ---------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, inspect: bool) -> None:
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data or self.down.is_set():
                    break
                pattern = self.trip_on
                if inspect and pattern:
                    window = tail + data
                    found = window.count(pattern)  # an occurrence can't lie wholly in ``tail`` (shorter)
                    tail = window[-(len(pattern) - 1) :] if len(pattern) > 1 else b""
                    if found:
                        with self._lock:
                            self.seen += found
                            trip = self.seen >= self.trip_at
                        if trip:
                            self.trip()  # this request never reaches the server
                            break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
