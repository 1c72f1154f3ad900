"""What a person sees from ``comentarios`` when something is wrong, run as a real subprocess.

Failures no retry can fix (a mistyped flag, no model, a storage root or source that does not exist, a
source host that does not resolve or answer) end at once with exactly one line on stderr saying what is
wrong and what to do: nothing else is printed, so Prefect never started and nothing was retried. A
failure inside a flow ends with one line too, without a traceback unless ``--verbose``. A normal run
prints no ERROR line (the temporary server's telemetry used to log one on every run offline) and ends
with the paths it wrote.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import dataset_rows
from helpers import write_batch

REPO = Path(__file__).resolve().parents[1]
AT_ONCE_S = 60  # generous: the checks take a few seconds; a retried task alone waited 23.5 s


@dataclass
class Done:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def err_lines(self) -> list[str]:
        return self.err.rstrip("\n").splitlines()


def comentarios(*args: str, cwd: Path, timeout: float = 300, **extra_env: str) -> Done:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | extra_env
    # the CLI's own defaults are under test: no telemetry settings from the test session
    env.pop("DO_NOT_TRACK", None)
    env.pop("PREFECT_SERVER_ANALYTICS_ENABLED", None)
    env["OMP_NUM_THREADS"] = "1"
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Done(done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def assert_one_line(done: Done, code: int, *fragments: str) -> str:
    assert done.code == code, done
    assert len(done.err_lines) == 1 and not done.out, f"expected one line on stderr:\n{done.err}{done.out}"
    assert done.seconds < AT_ONCE_S, done
    line = done.err_lines[0]
    for fragment in fragments:
        assert fragment in line, line
    return line


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mistyped_and_abbreviated_flags_are_refused(tmp_path):
    assert_one_line(
        comentarios("score", "--storag", str(tmp_path), cwd=tmp_path),
        2,
        "comentarios score: error: unrecognized arguments: --storag",
        "did you mean --storage?",
        "comentarios score --help",
    )
    # an abbreviation is a typo too, never read as the flag it starts
    assert_one_line(comentarios("score", "--stor", str(tmp_path), cwd=tmp_path), 2, "--stor", "--storage?")
    assert_one_line(comentarios("train", "--epoch", "3", cwd=tmp_path), 2, "did you mean --epochs?")
    assert_one_line(
        comentarios("train", "--device", "tpu", cwd=tmp_path), 2, "--device: invalid choice: 'tpu'"
    )
    assert_one_line(
        comentarios("train", "--val-fraction", "2", cwd=tmp_path),
        1,
        "--val-fraction: Input should be less than 1",
    )


def test_score_without_a_model_or_a_storage_root(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line(
        comentarios("score", "--storage", "empty", cwd=tmp_path),
        1,
        "comentarios score: no promoted model under",
        "train one first (comentarios train --storage empty) or pass --model <version>",
    )
    assert_one_line(
        comentarios("score", "--storage", "./nope", cwd=tmp_path),
        1,
        "storage root ./nope does not exist (--storage)",
    )


def test_score_with_a_model_version_that_is_not_there(root):
    assert_one_line(
        comentarios("score", "--storage", str(root), "--model", "v0", cwd=root),
        1,
        "model version 'v0' not found",
        "--model",
    )


def test_train_with_a_source_that_cannot_be_read(tmp_path):
    assert_one_line(
        comentarios("train", "--source", "https://comentarios.invalid/train.json", cwd=tmp_path),
        1,
        "cannot resolve host 'comentarios.invalid' of --source",
        "pass --source a local path",
    )
    port = closed_port()
    assert_one_line(
        comentarios("train", "--source", f"http://127.0.0.1:{port}/train.json", cwd=tmp_path),
        1,
        f"cannot connect to 127.0.0.1:{port} of --source",
    )
    assert_one_line(
        comentarios("train", "--source", "missing.json", cwd=tmp_path),
        1,
        "training source missing.json does not exist (--source)",
    )
    assert not (tmp_path / "storage").exists()


def test_deploy_without_a_reachable_server(tmp_path):
    assert_one_line(
        comentarios("deploy", cwd=tmp_path),
        1,
        "comentarios deploy: no Prefect server configured (PREFECT_API_URL is not set)",
        "prefect server start",
    )
    port = closed_port()
    assert_one_line(
        comentarios("deploy", cwd=tmp_path, PREFECT_API_URL=f"http://127.0.0.1:{port}/api"),
        1,
        f"cannot connect to 127.0.0.1:{port} of PREFECT_API_URL",
    )


def test_verbose_adds_the_traceback(tmp_path):
    done = comentarios("score", "--storage", "./nope", "--verbose", cwd=tmp_path)
    assert done.code == 1 and "Traceback (most recent call last)" in done.err
    assert done.err_lines[-1].startswith("comentarios score: storage root ./nope does not exist")


@pytest.mark.usefixtures("one_torch_thread")
def test_failure_inside_the_flow_ends_with_one_line_and_no_traceback(tmp_path):
    source = tmp_path / "not_the_dataset.json"
    source.write_text('[{"id": "1", "texto": "sin comentario"}]', encoding="utf-8")
    done = comentarios(
        "train", "--source", str(source), "--storage", "storage", "--epochs", "1", cwd=tmp_path
    )
    assert done.code == 1
    assert "Traceback" not in done.err, done.err[-3000:]
    assert done.err_lines[-1].startswith(
        "comentarios train: failed: DatasetError: required column(s) missing"
    )
    assert sum(line.startswith("comentarios train:") for line in done.err_lines) == 1


@pytest.mark.usefixtures("one_torch_thread")
def test_a_normal_run_prints_no_error_and_ends_with_the_paths(root, shared_dataset):
    rows = dataset_rows(shared_dataset, 40, "ok")
    rows.loc[len(rows), ["id", "comentario"]] = ["emoji", "😡😡😡"]  # no readable word: flagged for review
    write_batch(root, "lote.parquet", rows)
    done = comentarios("score", "--storage", str(root), cwd=root)
    assert done.code == 0, done.err[-3000:]
    output = done.out + done.err
    assert " ERROR " not in output and "| ERROR" not in output and "Traceback" not in output, output[-3000:]
    lines = done.out.rstrip("\n").splitlines()
    written = lines[lines.index("written:") + 1 :]
    assert [line.split(":", 1)[0].strip() for line in written] == [
        "predictions",
        "review",
        "reports/batches",
        "run report",
    ]
    for line in written:
        assert Path(line.split(": ", 1)[1].strip()).exists(), line
