"""Deployment settings without a server: the defaults of the YAML's build step, the settings
``comentarios deploy`` stores as Prefect Variables, and that ``deployments/prefect.yaml`` is wired to them.

The same YAML against a real server (plain ``prefect deploy`` with nothing exported, with Variables set,
without pools) is in ``test_deployments_e2e.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from flows.configs import DEFAULT_SOURCE
from flows.deploy import SETTINGS
from flows.deploy import WORKER_PROJECT_DIR
from flows.deploy import deploy_environment
from flows.deploy import deployment_settings
from flows.deploy import find_project_dir
from flows.deploy import given_settings
from flows.deploy import settings_with_defaults

REPO = Path(__file__).resolve().parents[1]


def test_find_project_dir_from_a_subfolder():
    assert find_project_dir(REPO / "flows") == REPO


def test_unset_variables_get_the_documented_defaults(tmp_path):
    settings, is_default = settings_with_defaults(
        {"timezone": "America/Bogota", "storage": ""}, str(tmp_path)
    )
    assert settings == {
        "storage": str(tmp_path / "storage"),
        "source": DEFAULT_SOURCE,
        "s3_endpoint_url": "",
        "score_cron": "0 2 * * *",
        "timezone": "America/Bogota",
        "project_dir": str(tmp_path),
    }
    assert [name for name, default in is_default.items() if not default] == ["timezone"]


def test_project_dir_from_each_worker_keeps_the_placeholder():
    settings, _ = settings_with_defaults({}, "/ignored", project_dir_from_worker="1")
    assert settings["project_dir"] == WORKER_PROJECT_DIR == "{{ $COMENTARIOS_PROJECT_DIR }}"
    assert settings["storage"] == "storage"  # relative to each worker's checkout


def test_build_step_says_where_each_value_came_from(capsys, tmp_path):
    out = deployment_settings(storage="s3://bucket/prefix", project_dir=str(tmp_path))
    assert out["storage"] == "s3://bucket/prefix" and out["timezone"] == "UTC"
    printed = capsys.readouterr().out
    assert "storage = s3://bucket/prefix  (Prefect Variable comentarios_storage)" in printed
    assert "timezone = UTC  (default; to change: prefect variable set comentarios_tz VALUE)" in printed


def test_given_settings_flags_over_environment_paths_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = {"COMENTARIOS_TZ": "Europe/Madrid", "COMENTARIOS_STORAGE": "/from/env", "OTHER": "x"}
    given = given_settings(
        {"storage": "./store", "source": "../data/train.json", "s3_endpoint_url": ""}, environ
    )
    assert given == {
        "storage": str(tmp_path / "store"),
        "source": str((tmp_path / "../data/train.json").resolve()),
        "s3_endpoint_url": "",  # given as empty: clears the Variable's value
        "timezone": "Europe/Madrid",
    }
    assert given_settings({"source": "https://host/x.json"}, {})["source"] == "https://host/x.json"


def test_deploy_environment_records_the_checkout_or_lets_workers_decide():
    env = deploy_environment(REPO, {"PATH": "/bin"})
    assert env["COMENTARIOS_PROJECT_DIR"] == str(REPO) and "COMENTARIOS_PROJECT_DIR_FROM_WORKER" not in env
    env = deploy_environment(REPO, {"COMENTARIOS_PROJECT_DIR": "/elsewhere"}, runtime_project_dir=True)
    assert "COMENTARIOS_PROJECT_DIR" not in env and env["COMENTARIOS_PROJECT_DIR_FROM_WORKER"] == "1"


def test_prefect_yaml_reads_every_setting_from_its_variable_and_uses_only_build_outputs():
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    (step,) = spec["build"]
    (name, inputs) = next(iter(step.items()))
    assert name == "flows.deploy.deployment_settings" and inputs["id"] == "comentarios"
    for setting, (variable, _) in SETTINGS.items():
        assert inputs[setting] == f"{{{{ prefect.variables.{variable} }}}}"
    outputs = set(deployment_settings(project_dir="/x"))
    used = re.findall(
        r"{{ comentarios\.(\w+) }}", yaml.safe_dump({k: spec[k] for k in ("pull", "deployments")})
    )
    assert used and set(used) <= outputs
    # nothing the deployments need is read from the deploying machine's environment any more
    assert "$COMENTARIOS_STORAGE" not in yaml.safe_dump(spec["deployments"])


def test_both_deployments_send_heartbeats_often_enough_for_the_zombie_automation():
    """The runs' environment sets the heartbeat period the automation's window is built from, and both
    deployments carry the tag the automation watches."""
    from flows.zombies import GRACE_HEARTBEATS
    from flows.zombies import HEARTBEAT_SECONDS
    from flows.zombies import TAG
    from flows.zombies import zombie_window

    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) == HEARTBEAT_SECONDS, deployment["name"]
        assert TAG in deployment["tags"], deployment["name"]
    assert zombie_window({}).total_seconds() == GRACE_HEARTBEATS * HEARTBEAT_SECONDS
    assert zombie_window({"COMENTARIOS_ZOMBIE_AFTER_SECONDS": "45"}).total_seconds() == 45
    assert zombie_window({"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "10"}).total_seconds() == GRACE_HEARTBEATS * 30


def test_the_zombie_automation_crashes_only_silent_runs_of_these_deployments():
    """Prefect's documented zombie-flow trigger: after a heartbeat, expect another heartbeat or a terminal
    state within the window, per flow run; otherwise force the run to Crashed. Limited to runs tagged
    ``comentarios``, so other flows on the server (with Prefect's 180 s heartbeat) are left alone."""
    from datetime import timedelta

    from flows.zombies import TAG
    from flows.zombies import zombie_automation

    automation = zombie_automation(timedelta(seconds=90))
    trigger = automation.trigger
    assert trigger.posture.value == "Proactive" and trigger.within == timedelta(seconds=90)
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.expect >= {
        "prefect.flow-run.heartbeat",
        "prefect.flow-run.Completed",
        "prefect.flow-run.Crashed",
    }
    assert trigger.expect >= {"prefect.flow-run.Failed", "prefect.flow-run.Cancelled"}
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.match_related.model_dump() == {
        "prefect.resource.role": "tag",
        "prefect.resource.id": f"prefect.tag.{TAG}",
    }
    (action,) = automation.actions
    assert action.type == "change-flow-run-state" and action.state.value == "CRASHED" and action.force
