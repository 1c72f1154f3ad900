#!/usr/bin/env bash
# GPU check, for a machine with a CUDA GPU (run from anywhere: it cds to the repo root).
#   bash bench/gpu_check.sh
# Installs what it needs (the CUDA build of torch unless torch already sees a GPU, then the project),
# trains on the shared dataset with --device cuda and with --device cpu, then scores a 1,000,000-row
# batch on the GPU and on the CPU, and prints the times side by side. Budget: under 8 minutes on one
# H100-class GPU with 16 cores. Nothing in the CPU path or the test suite depends on this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${DATA:-$(cd .. && pwd)/shared/data/comentarios_train.json}
WORK=$(mktemp -d /tmp/comentarios-gpu-check.XXXXXX)
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_HOME="$WORK/prefect" \
       PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120 PREFECT_LOGGING_LEVEL=WARNING
started=$(date +%s)

echo "== install"
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  "$PY" -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
fi
grep -v '^torch==' constraints.txt > "$WORK/constraints.txt"   # keep the CUDA torch that is there
"$PY" -m pip install -q -c "$WORK/constraints.txt" -e '.[dev]'
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"

echo "== training on the shared dataset ($DATA)"
for device in cuda cpu; do
  t0=$SECONDS
  "$PY" -m flows.cli train --source "$DATA" --storage "$WORK/store-$device" --device "$device" | grep -E "device|test|freeform|version"
  printf 'train %-4s  %4d s wall (Prefect start-up included)\n' "$device" $(( SECONDS - t0 )) | tee -a "$WORK/summary.txt"
done

echo "== scoring 1,000,000 rows, Parquet in and out"
"$PY" bench/score_throughput.py --rows 1000000 --distinct --precision auto fp32 --device cuda cpu \
  --workdir "$WORK/bench" | tee -a "$WORK/summary.txt"

echo "== summary (total $(( $(date +%s) - started )) s)"
cat "$WORK/summary.txt"
