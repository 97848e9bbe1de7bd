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

import dataclasses
import difflib
import functools
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import struct

from a2c_jax.config import ConfigError

CLIP_OBS = 10.0
CLIP_REWARD = 10.0
NORM_EPS = 1e-8


# --- running statistics (parallel Welford / Chan et al.) -------------------------------------


@struct.dataclass
class RunningMeanStd:
    """Running mean and variance of a stream of arrays of shape S (count starts at 1e-4, as SB3)."""

    mean: jax.Array  # S
    var: jax.Array  # S
    count: jax.Array  # ()


def rms_init(shape: tuple[int, ...]) -> RunningMeanStd:
    """Fresh statistics: mean 0, variance 1, count 1e-4."""
    return RunningMeanStd(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4, jnp.float32))


def rms_update(rms: RunningMeanStd, batch: jax.Array) -> RunningMeanStd:
    """Merge a batch [B, *S] into the statistics (Chan et al.'s parallel variance formula)."""
    chex.assert_shape(batch, (None, *rms.mean.shape))
    b_mean = jnp.mean(batch, axis=0)
    b_var = jnp.var(batch, axis=0)
    b_count = jnp.asarray(batch.shape[0], jnp.float32)
    delta = b_mean - rms.mean
    total = rms.count + b_count
    mean = rms.mean + delta * b_count / total
    m2 = rms.var * rms.count + b_var * b_count + jnp.square(delta) * rms.count * b_count / total
    return RunningMeanStd(mean, m2 / total, total)


def rms_normalize(rms: RunningMeanStd, x: jax.Array, clip: float) -> jax.Array:
    """(x - mean) / sqrt(var + eps), clipped to [-clip, clip]; x is [..., *S]."""
    return jnp.clip((x - rms.mean) / jnp.sqrt(rms.var + NORM_EPS), -clip, clip)


# --- spaces -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What the policy needs to know about an environment.

    Attributes:
        env_id: the id it was made from (with its namespace, if any).
        obs_shape: shape of one preprocessed observation (float32).
        action_kind: "discrete" (Categorical policy) or "continuous" (diagonal Gaussian).
        action_dim: number of actions (discrete) or action dimensions (continuous).
        action_low / action_high: Box bounds per dimension (continuous only).
        obs_onehot: number of categories when observations are one-hot encoded, else 0.
        max_episode_steps: the env's time limit.
    """

    env_id: str
    obs_shape: tuple[int, ...]
    action_kind: Literal["discrete", "continuous"]
    action_dim: int
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    obs_onehot: int = 0
    max_episode_steps: int = 1000


def _unsupported(env_id: str, what: str, space: Any) -> ConfigError:
    return ConfigError(
        f"env_id={env_id!r} is unsupported: its {what} space {space!r} is not handled "
        "(allowed: observation Box or Discrete; action Discrete or a bounded Box)"
    )


def spec_from_spaces(env_id: str, obs_space: Any, action_space: Any, max_steps: int) -> EnvSpec:
    """Build an EnvSpec, or raise ConfigError naming the space the policy cannot handle."""
    spaces = import_gymnax_module("spaces")
    onehot = 0
    if isinstance(obs_space, spaces.Discrete):
        obs_shape: tuple[int, ...] = (int(obs_space.n),)
        onehot = int(obs_space.n)
    elif isinstance(obs_space, spaces.Box):
        obs_shape = tuple(int(d) for d in obs_space.shape)
    else:
        raise _unsupported(env_id, "observation", obs_space)
    if isinstance(action_space, spaces.Discrete):
        return EnvSpec(env_id, obs_shape, "discrete", int(action_space.n), (), (), onehot, max_steps)
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        dim = int(action_space.shape[0])
        low = tuple(float(v) for v in jnp.broadcast_to(action_space.low, (dim,)))
        high = tuple(float(v) for v in jnp.broadcast_to(action_space.high, (dim,)))
        if all(abs(v) < float("inf") for v in low + high):
            return EnvSpec(env_id, obs_shape, "continuous", dim, low, high, onehot, max_steps)
    raise _unsupported(env_id, "action", action_space)


# --- importing gymnax environments ---------------------------------------------------------------
#
# `import gymnax` runs its package __init__, which imports every environment family; the bsuite and
# misc families pull in matplotlib, scipy and seaborn (about 2 s on a 2-core CPU, most of the start-up
# of a CartPole run). The classic-control and MinAtar families import only JAX. Their modules are
# imported here with gymnax's two package __init__s skipped: empty stand-ins for `gymnax` and
# `gymnax.environments` sit in sys.modules only while the family is imported, then are removed, so a
# later `import gymnax` runs normally and reuses the very same modules (the same classes). Every
# other id goes through `gymnax.make`.

_LIGHT_ENVS: dict[str, tuple[str, str]] = {
    "CartPole-v1": ("classic_control.cartpole", "CartPole"),
    "Pendulum-v1": ("classic_control.pendulum", "Pendulum"),
    "Acrobot-v1": ("classic_control.acrobot", "Acrobot"),
    "MountainCar-v0": ("classic_control.mountain_car", "MountainCar"),
    "MountainCarContinuous-v0": ("classic_control.continuous_mountain_car", "ContinuousMountainCar"),
    "Asterix-MinAtar": ("minatar.asterix", "MinAsterix"),
    "Breakout-MinAtar": ("minatar.breakout", "MinBreakout"),
    "Freeway-MinAtar": ("minatar.freeway", "MinFreeway"),
    "Seaquest-MinAtar": ("minatar.seaquest", "MinSeaquest"),
    "SpaceInvaders-MinAtar": ("minatar.space_invaders", "MinSpaceInvaders"),
}
"""gymnax ids -> (module under gymnax.environments, class) importable without gymnax's package init."""


def import_gymnax_module(name: str) -> types.ModuleType:
    """`gymnax.environments.<name>` without running the `gymnax` and `gymnax.environments` package
    __init__s when they have not run yet (see above); an ordinary import when they have."""
    full = f"gymnax.environments.{name}"
    if full in sys.modules or "gymnax.environments" in sys.modules:
        return importlib.import_module(full)
    root = importlib.util.find_spec("gymnax")
    if root is None or not root.submodule_search_locations:
        raise ConfigError("gymnax is not installed: pip install gymnax")
    added = []
    for package in ("gymnax", "gymnax.environments"):
        if package not in sys.modules:
            path = [str(p) + package[len("gymnax") :].replace(".", "/") for p in root.submodule_search_locations]
            stand_in = types.ModuleType(package)
            stand_in.__path__ = path
            stand_in.__spec__ = importlib.machinery.ModuleSpec(package, None, is_package=True)
            stand_in.__spec__.submodule_search_locations = path
            sys.modules[package] = stand_in
            added.append(package)
    try:
        return importlib.import_module(full)
    finally:
        for package in added:
            del sys.modules[package]


def registered_env_ids() -> list[str]:
    """Every id gymnax can build (imports all of gymnax)."""
    import gymnax

    return list(gymnax.registered_envs)


def _build_gymnax(env_id: str) -> tuple[Any, Any]:
    """(env, default params) for a gymnax id: the light import for the families in `_LIGHT_ENVS`."""
    if env_id in _LIGHT_ENVS:
        module, cls = _LIGHT_ENVS[env_id]
        try:
            env = getattr(import_gymnax_module(module), cls)()
            return env, env.default_params
        except (ImportError, AttributeError):  # a gymnax whose layout differs: its own make below
            pass
    import gymnax

    return gymnax.make(env_id)


@dataclasses.dataclass(frozen=True)
class AutoReset:
    """The protocol for an env whose `step(key, state, action, params)` returns `(obs, state, reward,
    done, info)` and does not reset (Craftax's NoAutoReset envs, gymnax's `step_env`): on `done` the
    step returns a fresh episode's obs and state, the reached observation as
    `info["final_observation"]`, and splits `done` into terminated and truncated by `time_limit(state,
    params)`, which says whether the reached state is at the episode's time limit."""

    env: Any
    time_limit: Callable[[Any, Any], jax.Array]

    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        return self.env.reset(key, params)

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any) -> tuple[Any, ...]:
        step_key, reset_key = jax.random.split(key)
        obs, reached, reward, done, truncated, info = step_without_reset(
            self.env, self.time_limit, step_key, state, action, params
        )
        fresh_obs, fresh = self.env.reset(reset_key, params)
        next_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, reached)
        return jnp.where(done, fresh_obs, obs), next_state, reward, done & ~truncated, truncated, info


def step_without_reset(
    env: Any, time_limit: Callable[[Any, Any], jax.Array], key: jax.Array, state: Any, action: jax.Array, params: Any
) -> tuple[Any, ...]:
    """One step of a `done`-only env (one environment): (obs, reached state, reward, done, truncated,
    info with the reached `final_observation`); truncated is `done` at the time limit."""
    obs, reached, reward, done, info = env.step(key, state, action, params)
    done = jnp.asarray(done, bool)
    truncated = done & jnp.asarray(time_limit(reached, params), bool)
    return obs, reached, reward, done, truncated, {**info, "final_observation": obs}


@dataclasses.dataclass(frozen=True)
class OptimisticAutoReset:
    """`AutoReset` for envs whose reset is costly (Craftax generates a whole world), stepping all N envs
    at once (`batched`: VecEnv hands it keys, states and actions with a leading N axis instead of
    vmapping it). Each step computes max(1, N // reset_ratio) fresh episodes instead of N and gives
    the k-th env that finished the step fresh episode k mod that count; envs that finish in the same
    step beyond the count start from copies of the same fresh episode (the trade of Craftax's own
    OptimisticResetVecEnvWrapper, whose ratio 16 is the default here). Terminated, truncated and
    `info["final_observation"]` are as `AutoReset` gives them."""

    env: Any
    time_limit: Callable[[Any, Any], jax.Array]
    reset_ratio: int = 16
    batched: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.reset_ratio, bool) or not isinstance(self.reset_ratio, int) or self.reset_ratio < 1:
            raise ConfigError(f"reset_ratio={self.reset_ratio!r} is invalid: must be an integer >= 1")

    def reset(self, keys: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        """keys [N, 2] -> (obs [N, ...], states with a leading N axis)."""
        return jax.vmap(self.env.reset, in_axes=(0, None))(keys, params)

    def step(self, keys: jax.Array, states: Any, actions: jax.Array, params: Any) -> tuple[Any, ...]:
        """keys [N, 2], states [N, ...], actions [N, ...] -> the protocol's step outputs, each [N, ...]."""
        num_envs = keys.shape[0]
        split = jax.vmap(jax.random.split)(keys)
        step = functools.partial(step_without_reset, self.env, self.time_limit)
        obs, reached, reward, done, truncated, info = jax.vmap(step, in_axes=(0, 0, 0, None))(
            split[:, 0], states, actions, params
        )
        pool = max(1, num_envs // self.reset_ratio)
        fresh_obs, fresh = self.reset(split[:pool, 1], params)
        slot = (jnp.cumsum(done) - 1) % pool  # the k-th finished env takes fresh episode k mod pool

        def pick(fresh_leaf: jax.Array, reached_leaf: jax.Array) -> jax.Array:
            mask = done.reshape(done.shape + (1,) * (reached_leaf.ndim - 1))
            return jnp.where(mask, fresh_leaf[slot], reached_leaf)

        next_state = jax.tree.map(pick, fresh, reached)
        return pick(fresh_obs, obs), next_state, reward, done & ~truncated, truncated, info


EnvBuilder = Callable[[str], tuple[Any, Any, EnvSpec]]
"""A family's constructor: name within the namespace -> (env, env params, EnvSpec)."""

_FAMILIES: dict[str, EnvBuilder] = {}
BUILTIN_FAMILIES = {"brax": ("a2c_jax.envs.brax", "brax"), "craftax": ("a2c_jax.envs.craftax", "craftax")}
"""namespace -> (adapter module with a `build(name)`, the extra that installs its package)."""
DEFAULT_NAMESPACE = "gymnax"
ENTRY_POINT_GROUP = "a2c_jax.env_families"


def register_env_family(namespace: str, build: EnvBuilder) -> None:
    """Make `namespace:name` ids build through `build(name)`; re-registering a namespace replaces it
    (agents built before keep the environments they were built with; nothing is cached)."""
    if not namespace.isidentifier() or namespace == DEFAULT_NAMESPACE:
        raise ConfigError(f"namespace={namespace!r} is invalid: must be an identifier other than 'gymnax'")
    _FAMILIES[namespace] = build


def unregister_env_family(namespace: str) -> None:
    """Forget a registered namespace (a no-op when it is not registered); agents built through it keep
    their environments."""
    _FAMILIES.pop(namespace, None)


def split_env_id(env_id: str) -> tuple[str, str]:
    """'brax:ant' -> ('brax', 'ant'); an id without a namespace is gymnax's."""
    namespace, sep, name = env_id.partition(":")
    return (namespace, name) if sep else (DEFAULT_NAMESPACE, env_id)


def _family(namespace: str) -> EnvBuilder:
    """The registered builder of `namespace`, loading an installed entry point when needed."""
    if namespace not in _FAMILIES and namespace in BUILTIN_FAMILIES:
        module, extra = BUILTIN_FAMILIES[namespace]
        if importlib.util.find_spec(namespace) is None:
            raise ConfigError(f"env_id namespace {namespace!r} needs its package: pip install 'a2c-jax[{extra}]'")
        _FAMILIES[namespace] = importlib.import_module(module).build
    if namespace not in _FAMILIES:
        from importlib.metadata import entry_points

        for point in entry_points(group=ENTRY_POINT_GROUP, name=namespace):
            _FAMILIES[namespace] = point.load()
    if namespace not in _FAMILIES:
        known = ", ".join([DEFAULT_NAMESPACE, *sorted(set(_FAMILIES) | set(BUILTIN_FAMILIES))])
        raise ConfigError(
            f"env_id namespace {namespace!r} is unknown: known are {known} (register one with "
            "a2c_jax.envs.register_env_family, or install a package that provides it)"
        )
    return _FAMILIES[namespace]


def make_env(env_id: str) -> tuple[Any, Any, EnvSpec]:
    """(env, env params, EnvSpec) for `env_id` (see the module docstring for the protocol), or a
    ConfigError that says why not. Builds afresh on every call (nothing is cached): call it on the
    host, once, and pass what it returns (`build_agent` does)."""
    namespace, name = split_env_id(env_id)
    if namespace != DEFAULT_NAMESPACE:
        build = _family(namespace)
        try:
            env, params, spec = build(name)
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(f"env_id={env_id!r} could not be built ({type(err).__name__}: {err})") from None
        if not isinstance(spec, EnvSpec):
            raise ConfigError(f"env_id={env_id!r}: its family returned {type(spec).__name__}, not an EnvSpec")
        return env, params, dataclasses.replace(spec, env_id=env_id)
    return _make_gymnax(name)


def _make_gymnax(env_id: str) -> tuple[Any, Any, EnvSpec]:
    """(gymnax env, default env params, EnvSpec) for a gymnax id."""
    known = list(_LIGHT_ENVS) if env_id in _LIGHT_ENVS else registered_env_ids()
    if env_id not in known:
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else f"known ids: {', '.join(known)}"
        raise ConfigError(f"env_id={env_id!r} is unknown to gymnax; {hint}")
    try:
        env, params = _build_gymnax(env_id)
    except Exception as err:  # e.g. MNISTBandit downloads its data set at construction
        raise ConfigError(
            f"env_id={env_id!r} could not be built ({type(err).__name__}: {err}); "
            "environments that download data at construction are unsupported offline"
        ) from None
    max_steps = int(getattr(params, "max_steps_in_episode", 1000))
    spec = spec_from_spaces(env_id, env.observation_space(params), env.action_space(params), max_steps)
    return env, params, spec


def preprocess_obs(spec: EnvSpec, obs: jax.Array) -> jax.Array:
    """Raw gymnax observations [N, ...] -> float32 [N, *spec.obs_shape] (one-hot if discrete)."""
    if spec.obs_onehot:
        return jax.nn.one_hot(obs, spec.obs_onehot, dtype=jnp.float32)
    return jnp.asarray(obs, jnp.float32)


def env_action(spec: EnvSpec, action: jax.Array, squashed: bool = False) -> jax.Array:
    """The action [N] or [N, D] the env receives: discrete actions pass through; continuous ones are
    clipped to the Box bounds, or, when the policy squashes them into [-1, 1] (`squash_output`),
    rescaled linearly onto [low, high] (SB3's `unscale_action`)."""
    if spec.action_kind == "discrete":
        return action
    low, high = jnp.asarray(spec.action_low), jnp.asarray(spec.action_high)
    if squashed:
        return low + 0.5 * (action + 1.0) * (high - low)
    return jnp.clip(action, low, high)


# --- the batched environment ------------------------------------------------------------------


@struct.dataclass
class VecEnvState:
    """State of N environments plus wrapper statistics.

    Attributes:
        inner: batched gymnax state (leading axis N).
        obs_rms: running observation statistics (shape obs_shape), shared by all N envs.
        ret_rms: running statistics of the discounted return (scalar), for reward scaling.
        discounted_return: [N] running discounted return used by reward normalisation.
        episode_return: [N] raw return of the episode in progress.
        episode_length: [N] length of the episode in progress.
    """

    inner: Any
    obs_rms: RunningMeanStd
    ret_rms: RunningMeanStd
    discounted_return: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


class StepInfo(NamedTuple):
    """Per-step extras, each [N] except final_obs [N, *obs_shape].

    `final_obs` is the (normalised) observation reached by the step before any auto-reset, so
    V(final_obs) is the bootstrap target of every step that was not terminated.
    `episode_return` / `episode_length` hold the raw totals where an episode ended, else 0.
    """

    final_obs: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class VecEnv:
    """N vmapped copies of an environment (as `make_env` returns it: `VecEnv(*make_env(id), n)`) with
    the wrappers selected by the flags. Holds the env itself, built once on the host; compiled code
    closes over it. Compared and hashed by identity: two VecEnvs are the same only if they are one."""

    env: Any
    env_params: Any
    spec: EnvSpec
    num_envs: int
    normalize_observation: bool = False
    normalize_reward: bool = False
    squash_actions: bool = False
    frozen_stats: bool = False
    """evaluation: observations are normalised by statistics given to `reset`, never updated"""

    def for_evaluation(self, num_envs: int) -> VecEnv:
        """The same envs and wrappers for evaluation episodes: `num_envs` of them, raw rewards, and the
        observation statistics passed to `reset` frozen."""
        return dataclasses.replace(self, num_envs=num_envs, normalize_reward=False, frozen_stats=True)

    def env_action(self, action: jax.Array) -> jax.Array:
        """The policy's action [N] or [N, D] as the env receives it (clipped, or rescaled if squashed)."""
        return env_action(self.spec, action, self.squash_actions)

    def normalize(self, obs_rms: RunningMeanStd, obs: jax.Array) -> jax.Array:
        """Apply observation normalisation with frozen statistics (identity when disabled)."""
        return rms_normalize(obs_rms, obs, CLIP_OBS) if self.normalize_observation else obs

    def reset(self, key: jax.Array, obs_rms: RunningMeanStd | None = None) -> tuple[jax.Array, VecEnvState]:
        """Reset all envs. Returns (obs [N, *obs_shape], state). Observation statistics start fresh, or
        are `obs_rms` (required when `frozen_stats`)."""
        env, params = self.env, self.env_params
        reset = env.reset if getattr(env, "batched", False) else jax.vmap(env.reset, in_axes=(0, None))
        raw_obs, inner = reset(jax.random.split(key, self.num_envs), params)
        obs = preprocess_obs(self.spec, raw_obs)
        if obs_rms is None:
            if self.frozen_stats:
                raise ValueError("a VecEnv with frozen statistics needs the obs_rms to reset with")
            obs_rms = rms_init(self.spec.obs_shape)
        if self.normalize_observation and not self.frozen_stats:
            obs_rms = rms_update(obs_rms, obs)
        zeros = jnp.zeros((self.num_envs,), jnp.float32)
        state = VecEnvState(
            inner=inner,
            obs_rms=obs_rms,
            ret_rms=rms_init(()),
            discounted_return=zeros,
            episode_return=zeros,
            episode_length=jnp.zeros((self.num_envs,), jnp.int32),
        )
        return self.normalize(obs_rms, obs), state

    def step(
        self, key: jax.Array, state: VecEnvState, action: jax.Array, gamma: jax.Array
    ) -> tuple[jax.Array, VecEnvState, jax.Array, jax.Array, jax.Array, StepInfo]:
        """Step all envs with `action` [N] or [N, D] (`env_action`: clipped or rescaled to the bounds).

        Returns (obs [N, ...], state, reward [N] (normalised if enabled), terminated [N] bool,
        truncated [N] bool, StepInfo). `gamma` is the discount of the reward normaliser.
        """
        env, params = self.env, self.env_params
        step = env.step if getattr(env, "batched", False) else jax.vmap(env.step, in_axes=(0, 0, 0, None))
        raw_obs, inner, reward, terminated, truncated, info = step(
            jax.random.split(key, self.num_envs), state.inner, self.env_action(action), params
        )
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.logical_and(jnp.asarray(truncated, bool), jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        obs = preprocess_obs(self.spec, raw_obs)
        final_obs = preprocess_obs(self.spec, info["final_observation"])

        obs_rms = state.obs_rms
        if self.normalize_observation and not self.frozen_stats:
            obs_rms = rms_update(obs_rms, obs)
        ret_rms, disc = state.ret_rms, state.discounted_return
        scaled_reward = reward
        if self.normalize_reward:
            disc = disc * gamma + reward
            ret_rms = rms_update(ret_rms, disc)
            scaled_reward = jnp.clip(reward / jnp.sqrt(ret_rms.var + NORM_EPS), -CLIP_REWARD, CLIP_REWARD)
            disc = jnp.where(done, 0.0, disc)

        ep_return = state.episode_return + reward
        ep_length = state.episode_length + 1
        info_out = StepInfo(
            final_obs=self.normalize(obs_rms, final_obs),
            episode_return=jnp.where(done, ep_return, 0.0),
            episode_length=jnp.where(done, ep_length, 0),
        )
        new_state = VecEnvState(
            inner=inner,
            obs_rms=obs_rms,
            ret_rms=ret_rms,
            discounted_return=disc,
            episode_return=jnp.where(done, 0.0, ep_return),
            episode_length=jnp.where(done, 0, ep_length),
        )
        return self.normalize(obs_rms, obs), new_state, scaled_reward, terminated, truncated, info_out
