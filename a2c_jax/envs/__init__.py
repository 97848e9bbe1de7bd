"""JAX environments behind a batched, pure interface with the wrappers A2C needs.

The environment protocol is gymnax's functional API (what PureJaxRL and rejax wrap other suites
into), with auto-reset:

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

for one environment (unbatched arrays). When a step ends an episode, `obs` and `state` already
belong to the next episode and `info["final_observation"]` holds the observation the step reached
(the bootstrap target of a truncated episode); `terminated` means the MDP ended (no bootstrap),
`truncated` that a time limit cut it. An `EnvSpec` tells the policy the shapes and bounds. An env
with a true class attribute `batched` takes and returns all N envs at once (leading axis N on keys,
states, actions and outputs) and is not vmapped: `OptimisticAutoReset` uses that to share costly resets.

Families of environments live behind a namespace: `--env-id gymnax:CartPole-v1` (the default
namespace, so `CartPole-v1` means the same), or `mine:corridor` after
`register_env_family("mine", build)` where `build(name) -> (env, params, EnvSpec)`. Installed
packages may register families through the entry-point group `a2c_jax.env_families` (name =
namespace, object = the build function), which the CLI finds without any import.

`VecEnv` steps N copies of an environment with `jax.vmap` and adds, all as pure functions of a
state pytree:

- observation preprocessing: float32 cast, one-hot encoding of discrete observations;
- observation normalisation by running mean/variance (SB3's VecNormalize, clipped to +-10);
- reward normalisation by the running std of the discounted return (VecNormalize's scheme);
- action clipping to the Box bounds (the policy's unclipped sample is what the loss sees), or the
  linear rescaling of tanh-squashed actions onto them;
- episode statistics (raw return and length of each finished episode).
"""

from __future__ import annotations

from a2c_jax.envs.gymnax import import_gymnax_module, registered_env_ids, spec_from_spaces
from a2c_jax.envs.normalize import CLIP_OBS, CLIP_REWARD, NORM_EPS, RunningMeanStd, rms_init, rms_normalize, rms_update
from a2c_jax.envs.registry import (
    BUILTIN_FAMILIES,
    DEFAULT_NAMESPACE,
    ENTRY_POINT_GROUP,
    EnvBuilder,
    make_env,
    register_env_family,
    split_env_id,
    unregister_env_family,
)
from a2c_jax.envs.spaces import EnvSpec, env_action, preprocess_obs
from a2c_jax.envs.vec import StepInfo, VecEnv, VecEnvState
from a2c_jax.envs.wrappers import AutoReset, OptimisticAutoReset, step_without_reset

__all__ = [
    "BUILTIN_FAMILIES",
    "CLIP_OBS",
    "CLIP_REWARD",
    "DEFAULT_NAMESPACE",
    "ENTRY_POINT_GROUP",
    "NORM_EPS",
    "AutoReset",
    "EnvBuilder",
    "EnvSpec",
    "OptimisticAutoReset",
    "RunningMeanStd",
    "StepInfo",
    "VecEnv",
    "VecEnvState",
    "env_action",
    "import_gymnax_module",
    "make_env",
    "preprocess_obs",
    "register_env_family",
    "registered_env_ids",
    "rms_init",
    "rms_normalize",
    "rms_update",
    "spec_from_spaces",
    "split_env_id",
    "step_without_reset",
    "unregister_env_family",
]
