"""Runs whose process died: marked Crashed, so that their deployment's concurrency slot is freed.

A flow run of ``score-nightly`` holds the deployment's only concurrency slot while it is Running. If
its process dies without saying so (the machine is switched off, the OOM killer or ``kill -9`` hits
the worker and its children), the server still shows it Running: the next nightly run waits for the
slot (Scheduled, AwaitingConcurrencySlot) until the slot's lease expires, and the Running run stays
in the UI until someone cancels it.

Prefect 3 has the parts to handle it (https://docs.prefect.io/v3/advanced/detect-zombie-flows):

* each flow run emits a ``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
  seconds (Prefect's default 180, at least 30); ``deployments/prefect.yaml`` sets it to
  :data:`HEARTBEAT_SECONDS` in the runs' environment (``job_variables.env``), whatever worker runs them;
* an **automation** on the server, :func:`zombie_automation`, that changes a run to Crashed when
  no heartbeat and no terminal state came within :data:`GRACE_HEARTBEATS` heartbeat periods of its
  last heartbeat. A Crashed run is finished: its concurrency slot is released at once. It only
  watches runs tagged :data:`TAG` (the tag of both deployments): other flows on the same server, or a
  ``comentarios train`` run outside a deployment, may send heartbeats every 180 s and must not be
  crashed between two of them.

``comentarios deploy`` (``deployments/stand_up.sh``) creates or updates that automation; nothing else
needs setting up. It is also what ends a run whose worker got SIGTERM (``kill``, systemd stopping the
service): Prefect 3.9.1's process worker then stops its flow-run process without that process reporting
Crashed (checked on a real server: the process is gone, the run stays Running); SIGTERM to every
process of the worker's service did not get a Crashed recorded either. See the README.
"""

from __future__ import annotations

import os
from datetime import timedelta

AUTOMATION_NAME = "comentarios: crash runs that stopped sending heartbeats"
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
HEARTBEAT_SECONDS = 30  # Prefect's minimum (deployments/prefect.yaml); its default, 180, would leave a
# dead run Running for ~10 minutes
TAG = "comentarios"  # the tag of both deployments (deployments/prefect.yaml), so of their runs
GRACE_HEARTBEATS = 3  # a busy or briefly unreachable run may miss one or two heartbeats
GRACE_ENV = "COMENTARIOS_ZOMBIE_AFTER_SECONDS"  # the window, in seconds, when set (tests shorten it)
TERMINAL_EVENTS = (
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
)


def heartbeat_seconds(environ: dict[str, str] | None = None) -> int:
    """The heartbeat period of the deployments' runs (:data:`HEARTBEAT_SECONDS`, the value
    ``deployments/prefect.yaml`` gives them), or ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` where
    ``comentarios deploy`` runs, for an operator who changed both."""
    env = os.environ if environ is None else environ
    value = env.get(HEARTBEAT_ENV) or env.get("PREFECT_RUNNER_HEARTBEAT_FREQUENCY")
    return max(int(value), 30) if value else HEARTBEAT_SECONDS


def zombie_window(environ: dict[str, str] | None = None) -> timedelta:
    """How long after a run's last heartbeat, with no new one and no end, it is declared Crashed."""
    env = os.environ if environ is None else environ
    if env.get(GRACE_ENV):
        return timedelta(seconds=int(env[GRACE_ENV]))
    return timedelta(seconds=GRACE_HEARTBEATS * heartbeat_seconds(env))


def zombie_automation(window: timedelta):
    """The automation (Prefect's documented "zombie flows" one): after a heartbeat of a flow run,
    expect another heartbeat or a terminal state within ``window``; if none comes, mark that run
    Crashed (forced: a Running run whose process is gone cannot agree to it)."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger
    from prefect.events.schemas.automations import Posture
    from prefect.events.schemas.events import ResourceSpecification

    return Automation(
        name=AUTOMATION_NAME,
        description=(
            "Marks a flow run Crashed when it sent no heartbeat for "
            f"{int(window.total_seconds())} s (its process died: machine off, OOM killer, kill -9), "
            "so its deployment's concurrency slot is freed and the next run starts. Created by "
            "comentarios deploy."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *TERMINAL_EVENTS},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification(
                {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"}
            ),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=window,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {int(window.total_seconds())} s: the flow run's process is gone "
                "(marked Crashed by the automation that comentarios deploy creates).",
                force=True,
            )
        ],
    )


def ensure_zombie_automation(window: timedelta | None = None):
    """Create the automation on the configured server, or update it (same name) to ``window``."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client

    wanted = zombie_automation(window or zombie_window())
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name=AUTOMATION_NAME)
    if not existing:
        return wanted.create()
    current = Automation(**existing[0].model_dump())
    for extra in existing[1:]:  # two deploys at once may have made two: keep one
        Automation(**extra.model_dump()).delete()
    wanted.id = current.id
    wanted.update()
    return wanted
