"""Deployment tooling: the settings of ``deployments/prefect.yaml``, and standing it up on a Prefect server.

The deployments' settings (storage root, training source, S3 endpoint, cron and time zone of the nightly
run) are **Prefect Variables** on the server, so that the plain Prefect command works from any machine
with nothing exported::

    prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml

Prefect's ``{{ ... }}`` templating has no default syntax (a missing Variable or environment variable
becomes ``""``, which the server then refuses with a long traceback), so the YAML's build step,
:func:`deployment_settings`, receives the Variables and fills in the documented default for each one
that is not set; the deployments read its outputs (``{{ comentarios.storage }}``).

``stand_up`` (``comentarios deploy``, ``deployments/stand_up.sh``) creates the work pools that are missing,
sets the Variables given as flags or ``COMENTARIOS_*`` environment variables, and runs that command.
``start_worker`` (``comentarios worker``) becomes the Prefect worker process.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

POOLS = ("gpu", "cpu")
PREFECT_FILE = Path("deployments") / "prefect.yaml"
DEPLOYMENTS = ("train-lstm/train-gpu", "score-batches/score-nightly")
DEFAULT_CRON = "0 2 * * *"
DEFAULT_TZ = "UTC"
# Stored in the pull step instead of a path when each worker says where its checkout is.
WORKER_PROJECT_DIR = "{{ $COMENTARIOS_PROJECT_DIR }}"

# setting -> (Prefect Variable, environment variable `comentarios deploy` also reads)
SETTINGS = {
    "storage": ("comentarios_storage", "COMENTARIOS_STORAGE"),
    "source": ("comentarios_source", "COMENTARIOS_SOURCE"),
    "s3_endpoint_url": ("comentarios_s3_endpoint_url", "COMENTARIOS_S3_ENDPOINT_URL"),
    "score_cron": ("comentarios_score_cron", "COMENTARIOS_SCORE_CRON"),
    "timezone": ("comentarios_tz", "COMENTARIOS_TZ"),
}


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


# ------------------------------------------------------------------ the build step of prefect.yaml


def settings_with_defaults(
    values: Mapping[str, str | None], project_dir: str = "", project_dir_from_worker: str = ""
) -> tuple[dict[str, str], dict[str, bool]]:
    """Every setting the deployments need, and whether each one is a default; no I/O.

    ``values`` maps the names of :data:`SETTINGS` to what the Variables held (``""`` or ``None``: unset).
    ``project_dir`` is where workers find the checkout (default: the folder ``prefect deploy`` runs in);
    with ``project_dir_from_worker``, the pull step keeps a placeholder that each worker fills from its
    own ``COMENTARIOS_PROJECT_DIR`` at run time, and the default storage is relative to that checkout.
    """
    from flows.configs import DEFAULT_SOURCE

    project = WORKER_PROJECT_DIR if project_dir_from_worker else (project_dir or str(Path.cwd()))
    defaults = {
        "storage": "storage" if project_dir_from_worker else str(Path(project) / "storage"),
        "source": DEFAULT_SOURCE,
        "s3_endpoint_url": "",  # none: AWS S3, or a local folder
        "score_cron": DEFAULT_CRON,
        "timezone": DEFAULT_TZ,
    }
    settings = {name: values.get(name) or default for name, default in defaults.items()}
    is_default = {name: not values.get(name) for name in defaults}
    return {**settings, "project_dir": project}, is_default


def deployment_settings(
    storage: str = "",
    source: str = "",
    s3_endpoint_url: str = "",
    score_cron: str = "",
    timezone: str = "",
    project_dir: str = "",
    project_dir_from_worker: str = "",
) -> dict[str, str]:
    """Build step of ``deployments/prefect.yaml`` (step id ``comentarios``): the Prefect Variables it is
    given, with the documented default for each unset one, as outputs the deployments read.

    Prints one line per setting saying where its value came from, so a deploy with nothing set says
    what it used and how to change it.
    """
    given = {
        "storage": storage,
        "source": source,
        "s3_endpoint_url": s3_endpoint_url,
        "score_cron": score_cron,
        "timezone": timezone,
    }
    settings, is_default = settings_with_defaults(given, project_dir, project_dir_from_worker)
    for name, (variable, _) in SETTINGS.items():
        origin = (
            f"default; to change: prefect variable set {variable} VALUE"
            if is_default[name]
            else f"Prefect Variable {variable}"
        )
        print(f"   {name} = {settings[name] or '(none)'!s}  ({origin})", flush=True)
    print(f"   project_dir = {settings['project_dir']}", flush=True)
    return settings


# ------------------------------------------------------------------------------ comentarios deploy


def given_settings(
    flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The settings an operator gave: a flag, else its ``COMENTARIOS_*`` environment variable.

    Local paths are made absolute (flow runs work in the checkout, not where the operator stood).
    A setting given as ``""`` (an S3 endpoint set to none) is kept: it clears the Variable's value.
    """
    env = os.environ if environ is None else environ
    given: dict[str, str] = {}
    for name, (_, env_name) in SETTINGS.items():
        value = flags.get(name)
        if value is None:
            value = env.get(env_name)
        if value is None:
            continue
        if name in ("storage", "source") and value and "://" not in value:
            value = str(Path(value).expanduser().resolve())
        given[name] = value
    return given


def prefect_command(*args: str) -> list[str]:
    """``prefect ARGS`` with the running interpreter, so the venv that has the project is the one used."""
    return [sys.executable, "-m", "prefect", *args]


def _run(command: list[str], env: Mapping[str, str], cwd: Path, echo: bool = True) -> None:
    if echo:
        print("+ " + shlex.join(["prefect", *command[3:]]), flush=True)
    subprocess.run(command, env=dict(env), cwd=cwd, check=True)


def api_url() -> str:
    """The Prefect API this process talks to (``PREFECT_API_URL`` or the active profile's), or one line
    saying how to get one: without it Prefect would deploy to a temporary server that then vanishes."""
    from prefect.settings import get_current_settings

    from flows.errors import ActionableError
    from flows.errors import check_host

    url = get_current_settings().api.url
    if not url:
        raise ActionableError(
            "no Prefect server configured (PREFECT_API_URL is not set)",
            "start one (prefect server start) and export PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
    check_host(url, "PREFECT_API_URL", todo="start the server (prefect server start) or fix PREFECT_API_URL")
    return url


def set_variables(settings: Mapping[str, str]) -> None:
    """Store the given settings as the server's Prefect Variables (what ``prefect.yaml`` reads)."""
    from prefect.variables import Variable

    for name, value in settings.items():
        variable = SETTINGS[name][0]
        Variable.set(variable, value, overwrite=True)
        print(f"Prefect Variable {variable} = {value!r}", flush=True)


def missing_pools(pools: Sequence[str]) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    missing = []
    with get_client(sync_client=True) as client:
        for pool in pools:
            try:
                client.read_work_pool(pool)
            except ObjectNotFound:
                missing.append(pool)
    return missing


def create_pools(cwd: Path, pools: Sequence[str] = POOLS, pool_type: str = "process") -> None:
    """Create the pools that do not exist (an existing pool, maybe of another type, is left as it is)."""
    for pool in missing_pools(pools):
        _run(prefect_command("work-pool", "create", pool, "--type", pool_type), os.environ, cwd)


def deploy_all(env: Mapping[str, str], project_dir: Path) -> None:
    _run(
        prefect_command("--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)),
        env,
        project_dir,
    )


def deploy_environment(
    project_dir: Path, environ: Mapping[str, str] | None = None, runtime_project_dir: bool = False
) -> dict[str, str]:
    """The environment ``prefect deploy`` runs in: the checkout the pull step records (or, with
    ``runtime_project_dir``, the flag that makes each worker's ``COMENTARIOS_PROJECT_DIR`` decide)."""
    env = dict(os.environ if environ is None else environ)
    if runtime_project_dir:
        env.pop("COMENTARIOS_PROJECT_DIR", None)
        env["COMENTARIOS_PROJECT_DIR_FROM_WORKER"] = "1"
    else:
        env.setdefault("COMENTARIOS_PROJECT_DIR", str(project_dir))
        env.pop("COMENTARIOS_PROJECT_DIR_FROM_WORKER", None)
    return env


def set_up_zombie_detection() -> None:
    """The server automation that marks Crashed a run of these deployments whose process died (its
    heartbeats stopped), freeing its concurrency slot (:mod:`flows.zombies`)."""
    from flows.zombies import AUTOMATION_NAME
    from flows.zombies import ensure_zombie_automation
    from flows.zombies import zombie_window

    window = zombie_window()
    ensure_zombie_automation(window)
    print(
        f"Automation {AUTOMATION_NAME!r}: a run of these deployments with no heartbeat for "
        f"{int(window.total_seconds())} s is marked Crashed (its concurrency slot is freed)",
        flush=True,
    )


def worker_command(pool: str, project_dir: Path | None = None) -> str:
    """The shell command that starts a worker for ``pool`` (what an operator types)."""
    prefix = f"COMENTARIOS_PROJECT_DIR={shlex.quote(str(project_dir))} " if project_dir else ""
    return f"{prefix}comentarios worker --pool {shlex.quote(pool)}"


def stand_up(
    project_dir: Path | None = None,
    flags: Mapping[str, str | None] | None = None,
    pools: Sequence[str] = POOLS,
    runtime_project_dir: bool = False,
) -> dict[str, str]:
    """Create the missing pools, set the given settings as Prefect Variables, deploy both deployments;
    returns the settings that were set."""
    project_dir = find_project_dir(project_dir)
    url = api_url()
    print(f"Prefect server: {url}", flush=True)
    given = given_settings(flags or {})
    set_variables(given)
    create_pools(project_dir, pools)
    deploy_all(deploy_environment(project_dir, runtime_project_dir=runtime_project_dir), project_dir)
    set_up_zombie_detection()
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
    return given


def start_worker(pool: str, pool_type: str = "process", extra_args: Sequence[str] = ()) -> NoReturn:
    """Become ``prefect worker start --pool POOL --type TYPE`` (``os.execv``: the same process).

    A signal sent to ``comentarios worker`` (SIGTERM from ``kill`` or a service manager, Ctrl-C) then
    reaches the worker itself, which stops; a wrapper process would die alone and leave the worker
    running, its pool still READY. The worker creates its pool (of ``pool_type``) if it does not exist.
    Flow runs started by this worker find the checkout through ``COMENTARIOS_PROJECT_DIR`` when the
    deployment was made with ``--runtime-project-dir``; it defaults to this checkout.
    """
    try:
        os.environ.setdefault("COMENTARIOS_PROJECT_DIR", str(find_project_dir()))
    except FileNotFoundError:
        pass  # not run from a checkout: the deployment's recorded path (or the worker's env) decides
    command = prefect_command("worker", "start", "--pool", pool, "--type", pool_type, *extra_args)
    # Started with `&` from a script, this process inherits SIGINT *ignored* (POSIX, for background jobs
    # of non-interactive shells) and exec keeps it so. Prefect's worker turns SIGTERM into a SIGINT to
    # itself, which would then be lost: the worker would never stop. Default dispositions, then exec.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
