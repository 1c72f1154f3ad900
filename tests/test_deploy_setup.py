"""``comentarios deploy`` set-up logic that needs no server: where the project is, which defaults fill in."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_deploy_defaults_fill_only_unset_variables(tmp_path):
    """stand_up's defaults (no server needed): unset or empty variables get one, set ones are kept."""
    from flows.configs import DEFAULT_SOURCE
    from flows.deploy import deploy_environment
    from flows.deploy import find_project_dir

    assert find_project_dir(REPO / "flows") == REPO
    env = deploy_environment(REPO, {"COMENTARIOS_TZ": "Europe/Madrid", "COMENTARIOS_STORAGE": ""})
    assert env["COMENTARIOS_TZ"] == "Europe/Madrid"
    assert env["COMENTARIOS_STORAGE"] == str(REPO / "storage")
    assert env["COMENTARIOS_SOURCE"] == DEFAULT_SOURCE
    assert env["COMENTARIOS_SCORE_CRON"] == "0 2 * * *"
    assert env["COMENTARIOS_PROJECT_DIR"] == str(REPO)
    # --runtime-project-dir: the pull step keeps its placeholder, for each worker to resolve
    env = deploy_environment(REPO, {"COMENTARIOS_PROJECT_DIR": "/elsewhere"}, runtime_project_dir=True)
    assert "COMENTARIOS_PROJECT_DIR" not in env and env["COMENTARIOS_TZ"] == "UTC"
