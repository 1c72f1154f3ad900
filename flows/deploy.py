"""Deployment tooling: stand up the two deployments of ``deployments/prefect.yaml`` on a Prefect server.

``stand_up`` does what the operator section of ``deployments/README.md`` describes, in order:
create the ``gpu`` and ``cpu`` process work pools (idempotent, ``--overwrite``), then
``prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml`` from the project root
with the ``COMENTARIOS_*`` variables the YAML reads (defaults filled in for the unset ones), then
print how to start one worker per pool. It drives the ``prefect`` CLI of the running interpreter
(``python -m prefect``), against whatever ``PREFECT_API_URL`` / profile is in effect.

``comentarios deploy`` and ``comentarios worker --pool cpu`` (``flows/cli.py``) call these functions;
``deployments/stand_up.sh`` runs ``comentarios deploy``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path

POOLS = ("gpu", "cpu")
PREFECT_FILE = Path("deployments") / "prefect.yaml"
DEPLOYMENTS = ("train-lstm/train-gpu", "score-batches/score-nightly")


def find_project_dir(start: Path | None = None) -> Path:
    """The checkout holding ``deployments/prefect.yaml``: ``start`` (default: the current folder) or
    a parent of it, else the folder this package was installed from (an editable install)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PREFECT_FILE).is_file():
            return folder
    package_root = Path(__file__).resolve().parents[1]
    if (package_root / PREFECT_FILE).is_file():
        return package_root
    raise FileNotFoundError(
        f"no {PREFECT_FILE} in {here} or its parents: run this from the project checkout or pass --project-dir"
    )


def deploy_environment(
    project_dir: Path, environ: Mapping[str, str] | None = None, runtime_project_dir: bool = False
) -> dict[str, str]:
    """The environment for ``prefect deploy``: ``environ`` plus a default for each unset (or empty)
    ``COMENTARIOS_*`` variable that ``deployments/prefect.yaml`` reads.

    With ``runtime_project_dir``, ``COMENTARIOS_PROJECT_DIR`` is removed instead: the deployments then
    keep the ``{{ $COMENTARIOS_PROJECT_DIR }}`` placeholder in their pull step, and each worker's
    environment says where its checkout is (workers on machines with different paths).
    """
    from flows.configs import DEFAULT_SOURCE

    env = dict(os.environ if environ is None else environ)
    if runtime_project_dir:
        env.pop("COMENTARIOS_PROJECT_DIR", None)
    defaults = {
        "COMENTARIOS_PROJECT_DIR": str(project_dir),
        "COMENTARIOS_STORAGE": str(project_dir / "storage"),
        "COMENTARIOS_SOURCE": DEFAULT_SOURCE,
        "COMENTARIOS_SCORE_CRON": "0 2 * * *",
        "COMENTARIOS_TZ": "UTC",
    }
    env.setdefault("COMENTARIOS_S3_ENDPOINT_URL", "")  # none: AWS S3, or a local folder
    if runtime_project_dir:
        del defaults["COMENTARIOS_PROJECT_DIR"]
    for name, value in defaults.items():
        if not env.get(name):
            env[name] = value
    return env


def prefect_command(*args: str) -> list[str]:
    """``prefect ARGS`` with the running interpreter, so the venv that has the project is the one used."""
    return [sys.executable, "-m", "prefect", *args]


def _run(command: list[str], env: Mapping[str, str], cwd: Path, echo: bool = True) -> None:
    if echo:
        print("+ " + shlex.join(["prefect", *command[3:]]), flush=True)
    subprocess.run(command, env=dict(env), cwd=cwd, check=True)


def create_pools(
    env: Mapping[str, str], cwd: Path, pools: Sequence[str] = POOLS, pool_type: str = "process"
) -> None:
    for pool in pools:
        _run(prefect_command("work-pool", "create", pool, "--type", pool_type, "--overwrite"), env, cwd)


def deploy_all(env: Mapping[str, str], project_dir: Path) -> None:
    _run(
        prefect_command("--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)),
        env,
        project_dir,
    )


def worker_command(pool: str, project_dir: Path | None = None) -> str:
    """The shell command that starts a worker for ``pool`` (what an operator types)."""
    prefix = f"COMENTARIOS_PROJECT_DIR={shlex.quote(str(project_dir))} " if project_dir else ""
    return f"{prefix}prefect worker start --pool {shlex.quote(pool)}"


def stand_up(
    project_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    pools: Sequence[str] = POOLS,
    runtime_project_dir: bool = False,
) -> dict[str, str]:
    """Create the pools and deploy both deployments; returns the environment used to deploy."""
    project_dir = find_project_dir(project_dir)
    env = deploy_environment(project_dir, environ, runtime_project_dir)
    if not env.get("PREFECT_API_URL"):
        print(
            "note: PREFECT_API_URL is not set; using the active Prefect profile's API "
            "(`prefect config view`). Start a server with `prefect server start` and "
            "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api` first.",
            flush=True,
        )
    for name in (
        "COMENTARIOS_STORAGE",
        "COMENTARIOS_S3_ENDPOINT_URL",
        "COMENTARIOS_SOURCE",
        "COMENTARIOS_SCORE_CRON",
        "COMENTARIOS_TZ",
        "COMENTARIOS_PROJECT_DIR",
    ):
        print(f"{name}={env.get(name, '(unset: read by each worker at run time)')}", flush=True)
    create_pools(env, project_dir, pools)
    deploy_all(env, project_dir)
    print(
        "\nDeployed " + " and ".join(DEPLOYMENTS) + ". Start one worker per pool (each in its own terminal, "
        "with the project's virtualenv active and the same PREFECT_API_URL):",
        flush=True,
    )
    for pool in pools:
        print(
            "    " + worker_command(pool, Path("/path/to/checkout") if runtime_project_dir else None),
            flush=True,
        )
    print("Then: prefect deployment run 'train-lstm/train-gpu' --watch", flush=True)
    return env


def start_worker(pool: str, extra_args: Sequence[str] = ()) -> int:
    """Run a worker for ``pool`` in the foreground (Ctrl-C stops it)."""
    command = prefect_command("worker", "start", "--pool", pool, *extra_args)
    try:
        return subprocess.run(command).returncode
    except KeyboardInterrupt:
        return 130
