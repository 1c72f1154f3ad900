"""Fetch the training source (http(s) URL, local path or any fsspec URI) and parse it into a frame."""

from __future__ import annotations

import json

import pandas as pd
from prefect import get_run_logger
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.storage import Storage
from tasks.validation import DatasetError


@task(name="fetch-source", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10])
def fetch_source(storage: Storage, source: str) -> bytes:
    """Read the whole source (opened with the run's storage settings); hiccups are retried by Prefect."""
    with storage.open_uri(source) as handle:
        data = handle.read()
    get_run_logger().info("Read %s bytes from %s", f"{len(data):,}", source)
    return data


def parse_records(data: bytes, name: str) -> pd.DataFrame:
    """A JSON array of objects or JSON Lines -> DataFrame (values as given; validation types them)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    stripped = text.lstrip()
    if not stripped:
        raise DatasetError(f"{name} is empty")
    if stripped.startswith("["):
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{name} is not JSON or JSON Lines: {exc.msg} at line {exc.lineno}") from None
    else:
        records = []
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(
                        f"{name} is not JSON or JSON Lines: {exc.msg} at line {number}"
                    ) from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DatasetError(f"{name} must hold a list of JSON objects (one per comment)")
    if not records:
        raise DatasetError(f"{name} holds no records")
    return pd.DataFrame.from_records(records)


@task(name="parse-source")
def parse_source(data: bytes, source: str) -> pd.DataFrame:
    frame = parse_records(data, source)
    get_run_logger().info("Parsed %d records with columns %s", len(frame), list(frame.columns))
    return frame
