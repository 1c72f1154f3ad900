#!/usr/bin/env bash
# Stand up the comentarios deployments on a Prefect server (a laptop or any machine with the project).
#
#   export PREFECT_API_URL=http://127.0.0.1:4200/api    # the server (prefect server start)
#   deployments/stand_up.sh                              # from anywhere inside the checkout
#
# It creates the process work pools `gpu` and `cpu` (again with --overwrite if they exist), deploys
# train-lstm/train-gpu and score-batches/score-nightly from deployments/prefect.yaml, and prints the
# worker commands. COMENTARIOS_STORAGE, COMENTARIOS_SOURCE, COMENTARIOS_SCORE_CRON, COMENTARIOS_TZ and
# COMENTARIOS_PROJECT_DIR are read from the environment; unset ones get defaults (see prefect.yaml).
# PYTHON picks the interpreter of the project's virtualenv (default: .venv/bin/python if present).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
exec "$PYTHON" -m flows.cli deploy --project-dir "$PWD" "$@"
