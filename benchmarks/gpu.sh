#!/usr/bin/env bash
# One prepared GPU run of at most ten minutes (the sections' limits add up to 590 s; the first run, on one
# H200 before the Brax section existed, took 6.5 minutes): install the carried wheels (gymnax, craftax and what they need,
# which the GPU image lacks), then every GPU measurement, each section under its own time limit so one slow
# section cannot take the others' time. Results: benchmarks/results/gpu-*.json (rewritten after each row,
# so a section stopped at its limit keeps the rows it finished). With RESULTS_COPY_TO=DIR, the results
# are also packed into DIR/results.tar.gz after every section, so a run stopped from outside keeps them.
#   bash benchmarks/gpu.sh                 # full sizes, on the GPU machine
#   SMALL=1 bash benchmarks/gpu.sh         # tiny sizes, to test the script on a CPU
# Wheels to carry in .whl (Python 3.12, manylinux, --no-deps), for an image with jax, flax, optax, chex,
# orbax and torch but none of these: gymnax 1.0.1, gymnasium 1.3.0, farama-notifications 0.0.6, tyro
# 1.0.17, docstring-parser 0.18.0, typeguard 4.6.1, craftax 1.6.1; for the Brax rows also brax 0.14.2,
# mujoco 4.0.0, mujoco-core 4.0.0, mujoco-studio 4.0.0, mujoco-mjx 3.17.0, trimesh 5.2.0, jaxopt 0.8.5,
# glfw 2.11.0, pyopengl 3.1.10, ml-collections 1.1.0 (about 35 MB in all). A section whose package is
# missing fails alone and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -d .whl ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
# JAX takes half the GPU's memory, so PyTorch (the baselines, in the same process) has room.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"
name="${NAME:-gpu}"
small="${SMALL:-0}"

section() {  # section LIMIT_SECONDS TITLE COMMAND...: run one measurement under a time limit
  local limit=$1 title=$2
  shift 2
  echo "== $title (limit ${limit}s) $(date -u +%T)"
  timeout -k 10 "$limit" "$@"
  local rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "== $title: stopped at its limit (rows finished before are saved)"
  elif [[ $rc -ne 0 ]]; then
    echo "== $title: failed (exit $rc)"
  fi
  if [[ -n "${RESULTS_COPY_TO:-}" ]] && compgen -G "benchmarks/results/$name-*.json" >/dev/null; then
    tar czf "$RESULTS_COPY_TO/results.tar.gz" benchmarks/results/"$name"-*.json
  fi
  return 0
}

if [[ "$small" == 1 ]]; then
  suite=(--envs 8 64 --population 2 4 --population-steps 2000 --torch-envs 8 64 --minatar-seeds 2
    --minatar-steps 640 --seconds 0.2 --repeats 2)
  rlhf=(--batches 16 --seconds 0.5 --no-compile)
  craftax=(--envs 8 --seconds 0.5)
  brax=(--env-ids brax:inverted_pendulum@spring --envs 4 --seconds 0.5)
else
  suite=(--seconds 1 --repeats 5)
  torch_device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  # PyTorch eager only: torch.compile of each batch size would take the run's minutes.
  rlhf=(--batches 64 256 --seconds 2 --no-compile --torch-device "$torch_device")
  craftax=(--envs 4096 --seconds 2)
  brax=(--env-ids brax:ant brax:hopper --envs 4096 --seconds 2)
fi
# float32 matmuls on both sides (the parity-grade rows), then TF32 on both (JAX's GPU default)
section 75 "a2c_jax throughput vs n_envs" python3 -m benchmarks.gpu_suite --only throughput "${suite[@]}" --name "$name"
# PyTorch eager (no host syncs), torch.compile (reduce-overhead: CUDA graphs) and one captured CUDA graph,
# interleaved with a2c_jax at each size
section 90 "PyTorch A2C vs n_envs" python3 -m benchmarks.gpu_suite --only torch "${suite[@]}" --name "$name"
section 60 "a2c_jax throughput, TF32" python3 -m benchmarks.gpu_suite --only throughput "${suite[@]}" \
  --precision tensorfloat32 --name "$name-tf32"
section 45 "populations" python3 -m benchmarks.gpu_suite --only population "${suite[@]}" --name "$name"
# RLHF: generated tokens/s and A2C-RLHF updates/s against the same loop in PyTorch on the GPU.
section 80 "RLHF throughput" python3 -m benchmarks.rlhf_throughput "${rlhf[@]}" --name "$name-rlhf-throughput"
# Craftax (extra craftax): env steps/s of full A2C training with SB3's settings.
section 90 "Craftax throughput" python3 -m benchmarks.throughput --env-ids craftax:Craftax-Classic-Symbolic-v1 \
  "${craftax[@]}" --name "$name-throughput-craftax"
# Brax (extra brax): env steps/s of full A2C training with the family's default preset, Brax's default
# physics backend (generalized), ant then hopper at 4,096 envs (the headline rows of Brax-based libraries).
# Each Brax program compiles for 1-3 minutes on a CPU host (twice per row: a probe, then the timed run),
# so hopper may be cut by the limit; MinAtar (already measured at full budget) comes last.
section 180 "Brax throughput" python3 -m benchmarks.throughput --preset default "${brax[@]}" --name "$name-throughput-brax"
section 80 "MinAtar returns at the presets' budgets" python3 -m benchmarks.gpu_suite --only minatar "${suite[@]}" \
  --name "$name"
# Many devices: throughput against the device count, when the machine has more than one GPU.
gpus=$(python3 -c "import jax; print(jax.device_count())" 2>/dev/null || echo 1)
if [[ "$gpus" -gt 1 ]]; then
  counts=""
  for d in 1 2 4 8 16; do [[ "$d" -le "$gpus" ]] && counts="$counts $d"; done
  if [[ "$small" == 1 ]]; then
    section 60 "scaling" python3 -m benchmarks.scaling --real --devices $counts --envs 64 --population 8 --seconds 0.5 \
      --name "$name-scaling-smoke"
  else
    section 120 "scaling" python3 -m benchmarks.scaling --real --devices $counts --envs 65536 --population 512 \
      --pop-envs 64 --name "$name-scaling"
  fi
fi
echo "== done $(date -u +%T)"
