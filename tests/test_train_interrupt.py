"""Ctrl-C during ``comentarios train``: the run ends within seconds, marked Crashed, publishing nothing.

A real terminal sends SIGINT to the whole foreground process group: the CLI and the temporary
Prefect server it started. The test does the same (``killpg``) to a real ``comentarios train`` in
ephemeral mode (no ``PREFECT_API_URL``), once training has started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_ctrl_c_during_training_ends_the_run_crashed_within_10_s(shared_dataset_path, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    storage = tmp_path / "storage"
    command = [sys.executable, "-m", "flows.cli", "train", "--source", str(shared_dataset_path)]
    command += ["--storage", str(storage), "--epochs", "500", "--patience", "500", "--hidden-size", "32"]
    log_path = tmp_path / "train.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_as_from_a_terminal,
        )
    try:
        deadline = time.monotonic() + 300
        while b"epoch  1/500" not in log_path.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the CLI and its temporary server
        interrupted = time.monotonic()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            masks = _signal_masks(proc.pid)
            pytest.fail(f"still running 10 s after Ctrl-C ({masks}):\n{log_path.read_text()[-3000:]}")
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log_path.read_text(errors="replace")
    print(f"Ctrl-C: the run ended {took:.1f} s later with exit code {code}")
    assert code == 130, output[-3000:]
    assert "Crash detected! Execution was aborted by an interrupt signal." in output
    assert "Flow run" in output and "Finished in state Crashed(" in output, output[-3000:]
    assert "Finished in state Running()" not in output
    assert not (storage / "models").exists(), "an interrupted training published a model"
    with pytest.raises(ProcessLookupError):  # the temporary server was stopped too, not orphaned
        os.killpg(proc.pid, 0)


def _as_from_a_terminal() -> None:
    """A shell starts a foreground command with SIGINT at its default and unblocked, whatever the
    state of the process that starts it (a child inherits ignored and blocked signals)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _signal_masks(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "no /proc status"
    return ", ".join(line for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt")))
