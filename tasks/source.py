"""Fetch the training source (http(s) URL, local path or any fsspec URI) and parse it into a frame."""

from __future__ import annotations

import json

import fsspec
import pandas as pd
from prefect import get_run_logger, task

from tasks.storage import storage_options_for
from tasks.validation import DatasetError


@task(name="fetch-source", retries=2, retry_delay_seconds=[2, 10])
def fetch_source(source: str, endpoint_url: str | None = None) -> bytes:
    """Read the whole source; network and object-store hiccups are retried by Prefect."""
    with fsspec.open(source, "rb", **storage_options_for(source, endpoint_url)) as handle:
        data = handle.read()
    get_run_logger().info("Read %s bytes from %s", f"{len(data):,}", source)
    return data


def parse_records(data: bytes, name: str) -> pd.DataFrame:
    """A JSON array of objects or JSON Lines -> DataFrame (values as given; validation types them)."""
    text = data.decode("utf-8-sig", errors="strict") if data else ""
    stripped = text.lstrip()
    if not stripped:
        raise DatasetError(f"{name} is empty")
    try:
        if stripped.startswith("["):
            records = json.loads(stripped)
        else:
            records = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{name} is not JSON or JSON Lines: {exc.msg} at line {exc.lineno}") from None
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
