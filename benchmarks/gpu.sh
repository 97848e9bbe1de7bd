#!/usr/bin/env bash
# One prepared GPU run of at most six minutes (the sections' limits add up to 355 s, plus the wheels'
# install), most valuable first: install the carried wheels (gymnax, craftax and what they need, which
# the GPU image lacks), then each measurement under its own time limit, so one slow section cannot take
# the others' time:
#   (a) CartPole throughput at 1,024 / 16k / 1M envs with XLA's FLOPs and bytes per env step and the
#       hot loops' kernel counts, float32 then TF32 on both sides;
#   (b) PyTorch at its best beside a2c_jax (eager without host syncs, torch.compile, one CUDA graph);
#   (c) Craftax-Classic with its family preset at 1,024 envs;
#   (d) Brax ant and hopper at 4,096 envs (each compiles for minutes on a CPU host: may be cut);
#   (e) MinAtar Breakout and SpaceInvaders at 10M steps per seed (the gymnax PPO references' budget).
# Results: $RESULTS_DIR (default benchmarks/results)/NAME-*.json, rewritten after each row, so a section
# stopped at its limit keeps the rows it finished. With RESULTS_COPY_TO=DIR, the results are also packed
# into DIR/results.tar.gz after every section, so a run stopped from outside keeps them.
#   bash benchmarks/gpu.sh                 # full sizes, on the GPU machine
#   SMALL=1 bash benchmarks/gpu.sh         # every section in tiny shapes, on a CPU (tests/test_gpu_script.py)
# Wheels to carry in .whl (Python 3.12, manylinux, --no-deps), for an image with jax, flax, optax, chex,
# orbax and torch but none of these: gymnax 1.0.1, gymnasium 1.3.0, farama-notifications 0.0.6, tyro
# 1.0.17, docstring-parser 0.18.0, typeguard 4.6.1, craftax 1.6.1; for the Brax rows also brax 0.14.2,
# mujoco 4.0.0, mujoco-core 4.0.0, mujoco-studio 4.0.0, mujoco-mjx 3.17.0, trimesh 5.2.0, jaxopt 0.8.5,
# glfw 2.11.0, pyopengl 3.1.10, ml-collections 1.1.0 (about 35 MB in all). A section whose package is
# missing fails alone and says so. The RLHF and population rows of earlier runs are not in this budget.
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
  local limit=$(( $1 * ${limit_scale:-1} )) title=$2
  shift 2
  echo "== $title (limit ${limit}s) $(date -u +%T)"
  timeout -k 10 "$limit" "$@"
  local rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "== $title: stopped at its limit (rows finished before are saved)"
  elif [[ $rc -ne 0 ]]; then
    echo "== $title: failed (exit $rc)"
  fi
  if [[ -n "${RESULTS_COPY_TO:-}" ]] && compgen -G "$results/$name-*.json" >/dev/null; then
    tar czf "$RESULTS_COPY_TO/results.tar.gz" "$results/$name"-*.json
  fi
  return 0
}

results="${RESULTS_DIR:-benchmarks/results}"
if [[ "$small" == 1 ]]; then
  limit_scale=4  # a CPU compiles every program far slower than the GPU machine's host
  suite=(--envs 8 --torch-envs 8 --seconds 0.2 --repeats 2)
  minatar=(--minatar-seeds 2 --minatar-steps 640)
  craftax=(--envs 8 --seconds 0.2 --repeats 2)
  brax=(--env-ids brax:inverted_pendulum@spring --envs 4 --seconds 0.2 --repeats 2)
else
  suite=(--envs 1024 16384 1048576 --torch-envs 1024 16384 1048576 --seconds 1 --repeats 5)
  minatar=(--minatar-seeds 5 --minatar-steps 10000000)
  craftax=(--envs 1024 --seconds 2 --repeats 5)
  brax=(--env-ids brax:ant brax:hopper --envs 4096 --seconds 2 --repeats 5)
fi
# (a) float32 matmuls on both sides (the parity-grade rows), then TF32 (JAX's GPU default)
section 50 "a2c_jax throughput vs n_envs, float32" python3 -m benchmarks.gpu_suite --only throughput "${suite[@]}" \
  --name "$name"
section 25 "a2c_jax throughput vs n_envs, TF32" python3 -m benchmarks.gpu_suite --only throughput "${suite[@]}" \
  --precision tensorfloat32 --name "$name-tf32"
# (b) PyTorch eager (no host syncs), torch.compile (reduce-overhead: CUDA graphs) and one captured CUDA
# graph, interleaved with a2c_jax at each size
section 70 "PyTorch A2C vs n_envs" python3 -m benchmarks.gpu_suite --only torch "${suite[@]}" --name "$name"
# (c) Craftax (extra craftax): env steps/s of full A2C training with the family's preset (512 x 3 MLP,
# 16 steps) and its optimistic reset
section 45 "Craftax throughput" python3 -m benchmarks.throughput --env-ids craftax:Craftax-Classic-Symbolic-v1 \
  --preset default "${craftax[@]}" --name "$name-throughput-craftax"
# (d) Brax (extra brax): the family's default preset, Brax's default physics backend (generalized)
section 75 "Brax throughput" python3 -m benchmarks.throughput --preset default "${brax[@]}" --name "$name-throughput-brax"
# (e) MinAtar final returns at the gymnax PPO references' budget, seeds in one program
section 90 "MinAtar returns at 10M steps" python3 -m benchmarks.gpu_suite --only minatar "${minatar[@]}" \
  --minatar-games Breakout-MinAtar SpaceInvaders-MinAtar --name "$name"
# Many devices (beyond the six minutes): throughput against the device count, when the machine has more than one GPU.
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
