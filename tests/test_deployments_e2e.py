"""End to end: a real Prefect server, ``deployments/prefect.yaml`` deployed by ``deployments/stand_up.sh``,
one ``comentarios worker`` per pool, and runs started with ``prefect deployment run`` as an operator would.

Checks, in order: the stand-up script creates the pools, stores the settings as Prefect Variables (flags
for the local run, ``COMENTARIOS_*`` variables for the S3 one) and deploys both deployments (parameters,
pull step, the score-nightly cron schedule with its time zone, its concurrency limit of one with
ENQUEUE); train-gpu (small model, two epochs) ends Completed and promotes a model (models/LATEST);
score-nightly, with the deployment's own parameters, scores a 200-row batch into predictions/; two
score-nightly runs started back to back never overlap: the second waits (AwaitingConcurrencySlot) and
starts after the first ended, and the batch they both see is scored once; the server's scheduler
creates the nightly runs at 02:00 in that time zone. Then (local run only) a failed run says why in
``prefect flow-run logs``; both workers stop on SIGTERM with no process left (one started with SIGINT
ignored, as ``&`` in a script starts it); and the plain ``prefect deploy`` with nothing exported keeps
the Variables' settings, uses the documented defaults once they are unset, and stops with one line
naming a missing work pool.

Everything the test starts (server, workers) runs in its own process group and is stopped in the
fixture teardown, on success or failure. It takes a few minutes on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import pandas as pd
import psutil
import pytest

from flows.configs import DEFAULT_SOURCE
from tasks.store.storage import Storage

pytest_plugins = ("s3_support",)  # the moto S3 server, for the S3 variant

REPO = Path(__file__).resolve().parents[1]
# Resolved as `comentarios deploy` records a local source (so that ../shared may be a symbolic link).
SHARED_DATA = (REPO.parent / "shared" / "data" / "comentarios_train.json").resolve()
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
STAND_UP = REPO / "deployments" / "stand_up.sh"
TZ = "America/Bogota"  # not the default (UTC), to show the time zone comes from COMENTARIOS_TZ
SERVER_START_TIMEOUT = 120
RUN_TIMEOUT = 300
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
TRAIN_OVERRIDES = {
    "device": "auto",
    "epochs": 2,
    "embedding_dim": 32,
    "hidden_size": 32,
    "num_layers": 1,
    "head_sizes": [32],
    "learning_rate": 0.005,
    "promote_threshold": 0.0,
}


def _prefect_bin() -> list[str]:
    """The venv's ``prefect`` (the one next to the interpreter running the tests)."""
    script = Path(sys.executable).parent / "prefect"
    return [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class Processes:
    """Background processes, each in its own session (process group), stopped in reverse order."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen, Path]] = []

    def start(
        self, name: str, command: list[str], env: dict[str, str], cwd: Path, ignore_sigint: bool = False
    ) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # what a non-interactive shell does to a background job (`comentarios worker &` in a script)
                preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
            )
        self.started.append((name, proc, log))
        return proc

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def stop_all(self) -> None:
        for name, proc, _ in reversed(self.started):
            self._stop(name, proc)

    @staticmethod
    def _stop(name: str, proc: subprocess.Popen, grace: float = 20.0) -> None:
        def signal_group(sig: int) -> None:
            try:
                os.killpg(proc.pid, sig)  # start_new_session: the group id is the child's pid
            except ProcessLookupError:
                pass

        if proc.poll() is None:
            signal_group(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                print(f"[e2e] {name} ignored SIGTERM for {grace:.0f} s: SIGKILL", flush=True)
        signal_group(signal.SIGKILL)  # whatever is left in the group (flow-run subprocesses)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            print(f"[e2e] {name} (pid {proc.pid}) did not exit", flush=True)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.stop_all()


def _run(
    args: list[str], env: dict[str, str], cwd: Path = REPO, timeout: float = RUN_TIMEOUT
) -> tuple[int, str]:
    """Run a command to completion: its exit code and its output (stdout then stderr)."""
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return done.returncode, done.stdout + done.stderr


def _cli(args: list[str], env: dict[str, str], cwd: Path = REPO, timeout: float = RUN_TIMEOUT) -> str:
    """Run a command to completion; fail with its output if it exits non-zero."""
    code, output = _run(args, env, cwd, timeout)
    assert code == 0, f"{' '.join(args)} exited {code}:\n{output[-6000:]}"
    return output


def _flow_run_id(output: str) -> UUID:
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert match, f"no flow run id in:\n{output[-3000:]}"
    return UUID(match.group(1))


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            pytest.fail(f"prefect server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"prefect server not healthy after {timeout} s:\n{_tail(log)}")


def _wait_terminal(client, run_id: UUID, timeout: float, logs: list[Path]):
    return _wait_state(client, run_id, TERMINAL, timeout, logs)


def _batch(dataset: pd.DataFrame, n: int, prefix: str) -> pd.DataFrame:
    rows = pd.concat([dataset] * (n // len(dataset) + 1), ignore_index=True).iloc[:n].copy()
    rows["id"] = [f"{prefix}-{i}" for i in range(n)]
    return rows


def _predictions(store: Storage, batch: str) -> pd.DataFrame:
    if not store.glob("predictions/*/*.parquet"):
        return pd.DataFrame(columns=["batch", "id"])
    frame = pd.read_parquet(store.uri("predictions"), storage_options=store.options or None)
    return frame[frame["batch"] == batch]


def _put_parquet(store: Storage, rel: str, frame: pd.DataFrame) -> None:
    with store.open_write(rel) as handle:
        frame.to_parquet(handle, index=False)


@dataclass
class Operator:
    """One operator session against a real server: the environment every command gets, and the steps
    of the README's operator block as methods, each checking what it promises."""

    processes: Processes
    env: dict[str, str]
    api_url: str
    storage: str
    endpoint: str
    workdir: Path  # workers run from here: the pull step must chdir to the checkout
    backend: str
    started: float = field(default_factory=time.monotonic)

    @property
    def store(self) -> Storage:
        return Storage(self.storage, self.endpoint or None)

    @property
    def worker_logs(self) -> list[Path]:
        return [self.processes.log("worker-gpu"), self.processes.log("worker-cpu")]

    def mark(self, step: str) -> None:
        print(f"[e2e] {time.monotonic() - self.started:7.1f} s  {step}", flush=True)

    def prefect(self, *args: str, timeout: float = RUN_TIMEOUT) -> str:
        return _cli([*_prefect_bin(), *args], self.env, timeout=timeout)

    def run_deployment(self, client, name: str, *args: str, log: Path):
        """``prefect deployment run NAME ARGS --watch``, as an operator would; the run must complete."""
        watch = ("--watch", "--watch-timeout", str(RUN_TIMEOUT))
        output = self.prefect("deployment", "run", name, *args, *watch, timeout=RUN_TIMEOUT + 60)
        run = _wait_terminal(client, _flow_run_id(output), 30, self.worker_logs)
        assert run.state.type.value == "COMPLETED", f"{name} ended {run.state.name}:\n{_tail(log)}"
        return run

    def start_server(self, port: int, cwd: Path) -> None:
        server = self.processes.start(
            "server",
            [*_prefect_bin(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            self.env,
            cwd,
        )
        took = _wait_healthy(
            f"{self.api_url}/health", server, self.processes.log("server"), SERVER_START_TIMEOUT
        )
        self.mark(f"server healthy after {took:.1f} s")

    def stand_up(self) -> None:
        """Pools, Variables and deployments, as documented: ``stand_up.sh`` (= ``comentarios deploy``) with
        flags (the README's operator block) for the local run, with ``COMENTARIOS_*`` for the S3 one."""
        flags = [] if self.backend == "s3" else ["--storage", self.storage, "--source", str(SHARED_DATA)]
        output = _cli([str(STAND_UP), *flags, "--timezone", TZ], self.env, cwd=self.workdir)
        assert "comentarios worker --pool gpu" in output and "comentarios worker --pool cpu" in output, output
        assert f"timezone = {TZ}  (Prefect Variable comentarios_tz)" in output, output
        self.mark("stand_up.sh: pools created, Variables set, both deployments deployed")

    def check_pools_and_deployments(self, client) -> None:
        pools = {pool.name: pool.type for pool in client.read_work_pools()}
        assert pools.get("gpu") == "process" and pools.get("cpu") == "process", pools

        train = client.read_deployment_by_name("train-lstm/train-gpu")
        assert train.work_pool_name == "gpu"
        assert train.entrypoint == "flows/train.py:train_lstm"
        assert train.parameters == {
            "config": {
                "storage": self.storage,
                "s3_endpoint_url": self.endpoint,
                "source": str(SHARED_DATA),
                "device": "auto",
            }
        }
        assert not train.schedules
        assert train.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]

        score = client.read_deployment_by_name("score-batches/score-nightly")
        assert score.work_pool_name == "cpu"
        assert score.entrypoint == "flows/score.py:score_batches"
        assert score.parameters == {
            "config": {"storage": self.storage, "s3_endpoint_url": self.endpoint, "model": "latest"}
        }
        assert len(score.schedules) == 1 and score.schedules[0].active
        schedule = score.schedules[0].schedule
        assert (schedule.cron, schedule.timezone) == ("0 2 * * *", TZ), schedule
        assert score.global_concurrency_limit is not None and score.global_concurrency_limit.limit == 1
        assert score.concurrency_options is not None
        assert score.concurrency_options.collision_strategy.value == "ENQUEUE"
        self.mark(
            f"score-nightly schedule: cron {schedule.cron!r} in {schedule.timezone}; concurrency limit "
            f"{score.global_concurrency_limit.limit}, {score.concurrency_options.collision_strategy.value}"
        )

    def start_workers(self) -> None:
        """One ``comentarios worker`` per pool, started away from the checkout; the cpu one with SIGINT
        ignored, as a script's ``comentarios worker --pool cpu &`` starts it."""
        for pool in ("gpu", "cpu"):
            self.processes.start(
                f"worker-{pool}",
                [sys.executable, "-m", "flows.cli", "worker", "--pool", pool],
                self.env,
                self.workdir,
                ignore_sigint=pool == "cpu",
            )

    def workers_stop_on_sigterm(self) -> None:
        """``kill <pid>`` of each ``comentarios worker``: it stops, and nothing it started is left."""
        workers = [(name, proc) for name, proc, _ in self.processes.started if name.startswith("worker-")]
        for name, proc in workers:
            assert proc.poll() is None, f"{name} is not running:\n{_tail(self.processes.log(name))}"
            proc.send_signal(signal.SIGTERM)  # the pid only, as `kill <pid>` does; not the group
        for name, proc in workers:
            try:
                proc.wait(60)  # generous: an idle worker stops in about a second
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} still running 60 s after SIGTERM:\n{_tail(self.processes.log(name))}")
            left = [p for p in psutil.process_iter(["pid"]) if _session_of(p.pid) == proc.pid]
            assert not left, f"{name}: processes left in its session: {left}"
            assert "stopped!" in self.processes.log(name).read_text(errors="replace")
        self.mark("both workers stopped on SIGTERM, no process left")

    def failed_run_says_why_in_its_logs(self) -> None:
        """A run that fails: ``--watch`` only says Failed; ``prefect flow-run logs <id>`` says why."""
        nowhere = json.dumps({"storage": str(self.workdir / "no-storage-here"), "model": "latest"})
        code, output = _run(
            [
                *_prefect_bin(),
                *("deployment", "run", "score-batches/score-nightly", "--param", f"config={nowhere}"),
                *("--watch", "--watch-timeout", str(RUN_TIMEOUT)),
            ],
            self.env,
            timeout=RUN_TIMEOUT + 60,
        )
        assert code != 0 and "Failed" in output, output[-3000:]
        logs = self.prefect("flow-run", "logs", str(_flow_run_id(output)))
        assert "no promoted model under" in logs and "train one" in logs, logs[-3000:]
        self.mark("failed run: `prefect flow-run logs <id>` names the missing model")

    def plain_prefect_deploy(self, client, expect_ok: bool = True) -> str:
        """What a Prefect user types first, from the checkout, with no COMENTARIOS_* exported."""
        assert not [k for k in self.env if k.startswith("COMENTARIOS_")]
        code, output = _run(
            [*_prefect_bin(), "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)], self.env
        )
        assert "Traceback" not in output and "Value for placeholder" not in output, output[-4000:]
        assert (code == 0) == expect_ok, f"exit {code}:\n{output[-4000:]}"
        return output

    def plain_prefect_deploy_needs_nothing_exported(self, client) -> None:
        """The plain deploy keeps the settings in the Variables; once they are unset, the defaults;
        without a work pool, one line naming it."""
        before = client.read_deployment_by_name("score-batches/score-nightly").parameters
        self.plain_prefect_deploy(client)
        assert client.read_deployment_by_name("score-batches/score-nightly").parameters == before
        self.mark("plain `prefect deploy`, nothing exported: the Variables' settings kept")

        for variable in client.read_variables():
            if variable.name.startswith("comentarios_"):
                client.delete_variable_by_name(variable.name)
        output = self.plain_prefect_deploy(client)
        assert "(default; to change: prefect variable set comentarios_storage VALUE)" in output, output
        train = client.read_deployment_by_name("train-lstm/train-gpu")
        score = client.read_deployment_by_name("score-batches/score-nightly")
        defaults = {"storage": str(REPO / "storage"), "s3_endpoint_url": ""}
        assert train.parameters == {"config": {**defaults, "source": DEFAULT_SOURCE, "device": "auto"}}
        assert score.parameters == {"config": {**defaults, "model": "latest"}}
        schedule = score.schedules[0].schedule
        assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "UTC")
        assert train.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
        self.mark("plain `prefect deploy`, no Variables: the documented defaults")

        client.delete_work_pool("gpu")
        output = self.plain_prefect_deploy(client, expect_ok=False)
        assert "references work pool 'gpu' which does not exist" in " ".join(output.split()), output
        self.mark("plain `prefect deploy` without the gpu pool: one line naming it")

    def train(self, client) -> None:
        """train-gpu with a small model, as an operator would (--watch waits for the end)."""
        params = {
            "config": {
                "storage": self.storage,
                "s3_endpoint_url": self.endpoint,
                "source": str(SHARED_DATA),
                **TRAIN_OVERRIDES,
            }
        }
        self.run_deployment(
            client, "train-lstm/train-gpu", "--params", json.dumps(params), log=self.worker_logs[0]
        )
        assert self.store.exists("models/LATEST"), self.store.glob("**")
        device_lines = [
            line
            for line in self.worker_logs[0].read_text(errors="replace").splitlines()
            if re.search(r"\b(cpu|cuda)\b", line) and "rain" in line
        ]
        assert device_lines, f"the train run logged no device:\n{_tail(self.worker_logs[0])}"
        self.mark(
            f"train-gpu Completed, model {self.store.read_text('models/LATEST').strip()} in {self.storage}; "
            f"{device_lines[-1].split(' - ', 1)[-1]}"
        )

    def score_with_deployment_parameters(self, client, dataset: pd.DataFrame) -> None:
        """score-nightly with the deployment's own parameters: a 200-row batch."""
        small = _batch(dataset, 200, "e2e-small")
        _put_parquet(self.store, "incoming/small.parquet", small)
        self.run_deployment(client, "score-batches/score-nightly", log=self.worker_logs[1])
        predicted = _predictions(self.store, "small.parquet")
        assert sorted(predicted["id"]) == sorted(small["id"]), f"{len(predicted)} of 200 rows in predictions/"
        self.mark("score-nightly Completed: 200 rows in predictions/")

    def two_runs_never_overlap(self, client, dataset: pd.DataFrame) -> None:
        """Two score-nightly runs started back to back: the second waits for the first."""
        big = _batch(dataset, 20_000, "e2e-big")
        _put_parquet(self.store, "incoming/big.parquet", big)
        slow = json.dumps(
            {
                "storage": self.storage,
                "s3_endpoint_url": self.endpoint,
                "model": "latest",
                "chunk_rows": 500 if self.backend == "local" else 2000,
                "inference_batch": 256,
            }
        )
        ids = [
            _flow_run_id(
                self.prefect("deployment", "run", "score-batches/score-nightly", "--param", f"config={slow}")
            )
            for _ in range(2)
        ]
        runs = [_wait_terminal(client, run_id, RUN_TIMEOUT, self.worker_logs) for run_id in ids]
        for r in runs:
            assert r.state.type.value == "COMPLETED", (
                f"{r.name} ended {r.state.name}:\n{_tail(self.worker_logs[1])}"
            )
        first, second = sorted(runs, key=lambda r: r.start_time)
        history = {r.id: [s.name for s in client.read_flow_run_states(r.id)] for r in runs}
        for r in (first, second):
            print(
                f"[e2e] run {r.name}: {r.start_time:%H:%M:%S.%f} -> {r.end_time:%H:%M:%S.%f} "
                f"({r.total_run_time}), states {history[r.id]}",
                flush=True,
            )
        assert second.start_time >= first.end_time, "the two score-nightly runs overlapped"
        assert "AwaitingConcurrencySlot" in history[second.id], history
        assert len(_predictions(self.store, "big.parquet")) == 20_000  # scored once, by the first run
        self.mark(
            "two score-nightly runs: the second waited (AwaitingConcurrencySlot) and started after the first"
        )

    def scheduler_made_the_nightly_runs(self, client) -> None:
        """The server's scheduler created score-nightly runs at 02:00 in COMENTARIOS_TZ."""
        score = client.read_deployment_by_name("score-batches/score-nightly")
        deadline = time.monotonic() + 90
        while True:
            upcoming = [
                r
                for r in client.read_flow_runs(limit=200)
                if r.deployment_id == score.id
                and r.auto_scheduled
                and r.state
                and r.state.name == "Scheduled"
            ]
            if upcoming or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert upcoming, "the scheduler created no score-nightly runs"
        local = sorted(r.expected_start_time.astimezone(ZoneInfo(TZ)) for r in upcoming)
        assert all((t.hour, t.minute) == (2, 0) for t in local), local[:3]
        assert local[0] > datetime.now(ZoneInfo(TZ))
        self.mark(f"scheduler: {len(upcoming)} nightly runs, next at {local[0].isoformat()}")


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def operator_environment(
    home: Path, api_url: str, storage: str, endpoint: str, backend: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "COMENTARIOS_"))}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_URL": api_url,
            "PREFECT_LOGGING_LEVEL": "INFO",
            # server: create the nightly runs soon after deploying; let an enqueued run retry after 2 s
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
            "PREFECT_SERVER_UI_ENABLED": "false",
            # workers: poll every second, and never pick up the 02:00 runs early
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            # flow runs: one torch/BLAS thread each (2 busy cores; spinning threads are much slower)
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHON": sys.executable,
        }
    )
    if backend == "s3":  # settings from the environment; the local run passes them as flags
        env.update(
            {
                "COMENTARIOS_STORAGE": storage,
                "COMENTARIOS_S3_ENDPOINT_URL": endpoint,
                "COMENTARIOS_SOURCE": str(SHARED_DATA),
            }
        )
    return env  # COMENTARIOS_PROJECT_DIR unset: the checkout stand_up.sh deploys from


@pytest.mark.e2e
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_deployments_on_a_real_server(tmp_path, processes, shared_dataset, backend, request):
    """The whole operator story; ``s3`` runs it again with the storage root on a moto S3 server."""
    from prefect.client.orchestration import SyncPrefectClient

    assert PREFECT_FILE.is_file() and os.access(STAND_UP, os.X_OK)
    if backend == "s3":
        prefix = request.getfixturevalue("s3_prefix")  # sets the AWS_* variables the workers inherit
        storage, endpoint = f"{prefix.uri}/storage", prefix.server.endpoint
    else:
        storage, endpoint = str(tmp_path / "storage"), ""
    home, workdir = tmp_path / "prefect-home", tmp_path / "elsewhere"
    home.mkdir()
    workdir.mkdir()
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = operator_environment(home, api_url, storage, endpoint, backend)
    operator = Operator(processes, env, api_url, storage, endpoint, workdir, backend)
    try:
        operator.start_server(port, tmp_path)
        operator.stand_up()
        with SyncPrefectClient(api_url) as client:
            operator.check_pools_and_deployments(client)
            operator.start_workers()
            operator.train(client)
            operator.score_with_deployment_parameters(client, shared_dataset)
            operator.two_runs_never_overlap(client, shared_dataset)
            operator.scheduler_made_the_nightly_runs(client)
            if backend == "local":
                operator.failed_run_says_why_in_its_logs()
                operator.workers_stop_on_sigterm()
                operator.plain_prefect_deploy_needs_nothing_exported(client)
    except BaseException:
        for name in ("server", "worker-gpu", "worker-cpu"):
            print(f"--- {name} log (tail)\n{_tail(processes.log(name), 3000)}", flush=True)
        raise
    finally:
        stop_start = time.monotonic()
        processes.stop_all()
        print(
            f"[e2e] stopped server and workers in {time.monotonic() - stop_start:.1f} s; "
            f"test took {time.monotonic() - operator.started:.1f} s",
            flush=True,
        )


# --------------------------------------------------------------------- a worker killed during a run

ZOMBIE_WINDOW_SECONDS = 45  # the automation's window in this test (production: 3 heartbeats, 90 s)
CRASH_WAIT = 120  # bounded waits for a state: generous on a loaded 2-core machine


def _wait_state(client, run_id: UUID, wanted: set[str], timeout: float, logs: list[Path]):
    """Poll until the run's state type is one of ``wanted``; fail with the logs after ``timeout`` s."""
    start = time.monotonic()
    while True:
        run = client.read_flow_run(run_id)
        if run.state is not None and run.state.type.value in wanted:
            return run
        if time.monotonic() - start > timeout:
            tails = "\n".join(f"--- {p.name}\n{_tail(p)}" for p in logs)
            pytest.fail(
                f"flow run {run_id} still {run.state.name if run.state else None} after {timeout} s\n{tails}"
            )
        time.sleep(0.5)


def _slow_score_run(operator: Operator) -> UUID:
    """Start a score-nightly run that scores a 20,000-row batch in small chunks (tens of seconds)."""
    slow = json.dumps(
        {"storage": operator.storage, "model": "latest", "chunk_rows": 200, "inference_batch": 64}
    )
    output = operator.prefect("deployment", "run", "score-batches/score-nightly", "--param", f"config={slow}")
    return _flow_run_id(output)


@pytest.mark.e2e
@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    ("signal_name", "scope"), [("SIGTERM", "group"), ("SIGTERM", "service"), ("SIGKILL", "service")]
)
def test_a_run_whose_worker_is_killed_ends_crashed_and_frees_the_slot(
    tmp_path, processes, shared_dataset, signal_name, scope
):
    """``signal_name`` while a score-nightly run is Running, to the cpu worker's process group
    (``group``: the flow run's process, in a session of its own, is then stopped by the worker without
    reporting anything) or to every process of the worker's service (``service``, as systemd stops a
    unit: the worker and the flow run's process). Whatever reports or not, the run must end Crashed
    (itself on its way out, or by the zombie automation ``stand_up.sh`` created once its heartbeats
    stop) and the deployment's only concurrency slot must be free: the next run, with a new worker,
    starts without waiting for a slot and completes."""
    from prefect.client.orchestration import SyncPrefectClient

    from flows.zombies import AUTOMATION_NAME
    from helpers import tiny_bundle
    from tasks.registry.versions import set_latest
    from tasks.registry.versions import write_version

    storage = str(tmp_path / "storage")
    home, workdir = tmp_path / "prefect-home", tmp_path / "elsewhere"
    home.mkdir()
    workdir.mkdir()
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = operator_environment(home, api_url, storage, "", "local")
    env["COMENTARIOS_ZOMBIE_AFTER_SECONDS"] = str(ZOMBIE_WINDOW_SECONDS)
    if os.environ.get("COMENTARIOS_E2E_SCREENS"):  # keep the server's UI, for a screenshot at the end
        env.update({"PREFECT_SERVER_UI_ENABLED": "true", "PREFECT_UI_API_URL": api_url})
    operator = Operator(processes, env, api_url, storage, "", workdir, "local")
    kill = getattr(signal, signal_name)
    try:
        operator.start_server(port, tmp_path)
        operator.stand_up()
        version = "20250101T000000Z-killed00"
        bundle, _ = tiny_bundle(version)
        write_version(operator.store, version, bundle.to_files())
        set_latest(operator.store, version)
        _put_parquet(operator.store, "incoming/big.parquet", _batch(shared_dataset, 20_000, "killed"))
        with SyncPrefectClient(api_url) as client:
            (automation,) = client.read_automations_by_name(AUTOMATION_NAME)
            assert automation.enabled and automation.trigger.within.total_seconds() == ZOMBIE_WINDOW_SECONDS
            worker = processes.start(
                "worker-cpu", [sys.executable, "-m", "flows.cli", "worker", "--pool", "cpu"], env, workdir
            )
            first = _slow_score_run(operator)
            _wait_state(client, first, {"RUNNING"}, RUN_TIMEOUT, [processes.log("worker-cpu")])
            # let it score a few chunks (and send its first heartbeat), then stop the whole service
            _wait_for_chunks(operator.store, 3, RUN_TIMEOUT)
            operator.mark(f"score-nightly run {first} is Running; {signal_name} to the worker's {scope}")
            service = [worker.pid] + [c.pid for c in psutil.Process(worker.pid).children(recursive=True)]
            for pid in service if scope == "service" else [worker.pid]:
                try:
                    os.killpg(os.getpgid(pid), kill)
                except ProcessLookupError:
                    pass
            worker.wait(60)
            wait = CRASH_WAIT + (ZOMBIE_WINDOW_SECONDS + 30 if kill == signal.SIGKILL else 0)
            crashed = _wait_state(
                client, first, TERMINAL, wait, [processes.log("worker-cpu"), processes.log("server")]
            )
            assert crashed.state.type.value == "CRASHED", f"{crashed.state.name}: {crashed.state.message}"
            operator.mark(f"run {first} ended {crashed.state.name}: {crashed.state.message}")

            processes.start(
                "worker-cpu-2", [sys.executable, "-m", "flows.cli", "worker", "--pool", "cpu"], env, workdir
            )
            second = _slow_score_run(operator)
            running = _wait_state(
                client, second, {"RUNNING", *TERMINAL}, RUN_TIMEOUT, [processes.log("worker-cpu-2")]
            )
            history = [s.name for s in client.read_flow_run_states(second)]
            assert "AwaitingConcurrencySlot" not in history, history
            done = _wait_state(client, second, TERMINAL, RUN_TIMEOUT, [processes.log("worker-cpu-2")])
            assert done.state.type.value == "COMPLETED", (
                f"{done.state.name}:\n{_tail(processes.log('worker-cpu-2'))}"
            )
            assert sorted(_predictions(operator.store, "big.parquet")["id"].unique()) == sorted(
                f"killed-{i}" for i in range(20_000)
            )
            operator.mark(f"next run {running.name}: states {history}, then Completed; every row predicted")
            if os.environ.get("COMENTARIOS_E2E_SCREENS"):  # the Prefect UI for a person to look at
                print(f"[e2e] SCREENSHOT-PAUSE {api_url}", flush=True)
                time.sleep(float(os.environ["COMENTARIOS_E2E_SCREENS"]))
    except BaseException:
        for name in ("server", "worker-cpu", "worker-cpu-2"):
            print(f"--- {name} log (tail)\n{_tail(processes.log(name), 3000)}", flush=True)
        raise


def _wait_for_chunks(store: Storage, n: int, timeout: float) -> None:
    """Wait until the run has written ``n`` prediction chunks (it is scoring, not starting up)."""
    start = time.monotonic()
    while len(store.glob("predictions/**/*.parquet")) < n:
        if time.monotonic() - start > timeout:
            pytest.fail(f"fewer than {n} prediction chunks after {timeout} s")
        time.sleep(0.5)
