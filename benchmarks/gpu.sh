#!/usr/bin/env bash
# One prepared GPU run, a few minutes: install the carried wheels (gymnax and what it needs, which the
# GPU image lacks), then every GPU measurement. Results: benchmarks/results/gpu-*.json.
#   bash benchmarks/gpu.sh                 # full sizes, on the GPU machine
#   SMALL=1 bash benchmarks/gpu.sh         # tiny sizes, to test the script on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -d .whl ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
if [[ "${SMALL:-0}" == 1 ]]; then
  python3 -m benchmarks.gpu_suite --envs 8 64 --population 2 4 --population-steps 2000 --torch-envs 8 64 \
    --minatar-seeds 2 --minatar-steps 640 --seconds 0.5 --name "${NAME:-gpu-smoke}"
else
  python3 -m benchmarks.gpu_suite --name "${NAME:-gpu}"
fi
