"""Actor-critic networks (flax.linen) and the `Policy` bundle the core functions use.

The default matches SB3's MlpPolicy for A2C: separate actor and critic MLPs [64, 64] tanh,
orthogonal init with gain sqrt(2) on hidden layers, 0.01 on the policy head and 1.0 on the value
head, zero biases, and a state-independent log-std for continuous actions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from a2c_jax.config import A2CConfig, ConfigError
from a2c_jax.distributions import DistributionFns, PiParams, distribution_for
from a2c_jax.envs import EnvSpec

Params = Any

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"tanh": jnp.tanh, "relu": nn.relu}


def gram_schmidt(a: jax.Array) -> jax.Array:
    """Orthonormalise the columns of a [m, k] (m >= k) by modified Gram-Schmidt, applied twice.

    Equals Q of a = QR with diag(R) > 0, in plain jnp: no LAPACK call, so it batches under `vmap`.
    (A vmapped `jnp.linalg.qr` runs LAPACK's batched kernel on XLA's CPU thread pool, which can
    deadlock on small machines; initialising a vmapped population must never hang.)
    """
    m, k = a.shape

    def column(j: jax.Array, q: jax.Array) -> jax.Array:
        v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
        for _ in range(2):  # "twice is enough" for orthogonality to working precision
            v = v - q @ (q.T @ v)
        return jax.lax.dynamic_update_index_in_dim(q, v / jnp.linalg.norm(v), j, axis=1)

    return jax.lax.fori_loop(0, k, column, jnp.zeros((m, k), a.dtype))


def orthogonal(scale: float) -> Callable[..., jax.Array]:
    """Orthogonal initialiser (Saxe et al. 2014) with gain `scale`, same law as flax's/PyTorch's."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        n_rows, n_cols = math.prod(shape[:-1]), shape[-1]
        q = gram_schmidt(jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype))
        return (scale * (q.T if n_rows < n_cols else q)).reshape(shape)

    return init


def _dense(features: int, scale: float, ortho: bool, name: str | None = None) -> nn.Dense:
    init = orthogonal(scale) if ortho else nn.initializers.lecun_normal()
    return nn.Dense(features, kernel_init=init, bias_init=nn.initializers.zeros, name=name)


class MLPTorso(nn.Module):
    """Flattens the trailing `obs_ndim` dims, then Dense+activation per hidden size: [..., H]."""

    hidden_sizes: Sequence[int]
    activation: str
    obs_ndim: int
    ortho_init: bool = True

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs.reshape((*obs.shape[: obs.ndim - self.obs_ndim], -1))
        act = _ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(_dense(size, math.sqrt(2.0), self.ortho_init)(x))
        return x


class CNNTorso(nn.Module):
    """[..., H, W, C] -> Conv 16 3x3 (valid) + activation -> flatten -> dense layers: [..., H_last]."""

    hidden_sizes: Sequence[int]
    activation: str
    ortho_init: bool = True

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        lead = obs.shape[:-3]
        x = obs.reshape((-1, *obs.shape[-3:]))
        init = orthogonal(math.sqrt(2.0)) if self.ortho_init else nn.initializers.lecun_normal()
        act = _ACTIVATIONS[self.activation]
        x = act(nn.Conv(16, (3, 3), padding="VALID", kernel_init=init, bias_init=nn.initializers.zeros)(x))
        x = x.reshape((*lead, -1))
        for size in self.hidden_sizes:
            x = act(_dense(size, math.sqrt(2.0), self.ortho_init)(x))
        return x


class ActorCritic(nn.Module):
    """obs [..., *obs_shape] -> (policy parameters, value [...]).

    Policy parameters are logits [..., A] for discrete actions or (mean [..., D], log_std [D])
    for continuous ones.
    """

    spec: EnvSpec
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    torso: str = "mlp"
    shared_torso: bool = False
    log_std_init: float = 0.0
    ortho_init: bool = True

    def setup(self) -> None:
        ndim = len(self.spec.obs_shape)
        make_torso: Callable[[], nn.Module]
        if self.torso == "cnn":
            make_torso = lambda: CNNTorso(self.hidden_sizes, self.activation, self.ortho_init)
        else:
            make_torso = lambda: MLPTorso(self.hidden_sizes, self.activation, ndim, self.ortho_init)
        self.pi_torso = make_torso()
        if not self.shared_torso:
            self.vf_torso = make_torso()
        self.pi_head = _dense(self.spec.action_dim, 0.01, self.ortho_init)
        self.vf_head = _dense(1, 1.0, self.ortho_init)
        if self.spec.action_kind == "continuous":
            self.log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.spec.action_dim,))

    def actor(self, obs: jax.Array) -> PiParams:
        """Policy parameters for obs [..., *obs_shape]."""
        out = self.pi_head(self.pi_torso(obs))
        if self.spec.action_kind == "continuous":
            return out, self.log_std
        return out

    def critic(self, obs: jax.Array) -> jax.Array:
        """State value [...] for obs [..., *obs_shape]."""
        torso = self.pi_torso if self.shared_torso else self.vf_torso
        return self.vf_head(torso(obs))[..., 0]

    def __call__(self, obs: jax.Array) -> tuple[PiParams, jax.Array]:
        return self.actor(obs), self.critic(obs)


class Policy(NamedTuple):
    """Pure functions of (params, obs) plus the action distribution; built once per config.

    apply(params, obs) -> (pi_params, value); actor(params, obs) -> pi_params;
    critic(params, obs) -> value; init(key) -> params.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], tuple[PiParams, jax.Array]]
    actor: Callable[[Params, jax.Array], PiParams]
    critic: Callable[[Params, jax.Array], jax.Array]
    dist: DistributionFns


def make_policy(config: A2CConfig, spec: EnvSpec) -> Policy:
    """The ActorCritic for `config` and `spec`, wrapped as pure functions."""
    if config.torso == "cnn" and len(spec.obs_shape) != 3:
        raise ConfigError(
            f"torso='cnn' needs image observations [H, W, C]; env_id={spec.env_id!r} has observations of "
            f"shape {spec.obs_shape}: use torso='mlp'"
        )
    net = ActorCritic(
        spec=spec,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        torso=config.torso,
        shared_torso=config.shared_torso,
        log_std_init=config.log_std_init,
        ortho_init=config.ortho_init,
    )

    def init(key: jax.Array) -> Params:
        return net.init(key, jnp.zeros((1, *spec.obs_shape), jnp.float32))

    def apply(params: Params, obs: jax.Array) -> tuple[PiParams, jax.Array]:
        chex.assert_rank(obs, len(spec.obs_shape) + 1)
        return cast(tuple[PiParams, jax.Array], net.apply(params, obs))

    def actor(params: Params, obs: jax.Array) -> PiParams:
        return net.apply(params, obs, method=ActorCritic.actor)

    def critic(params: Params, obs: jax.Array) -> jax.Array:
        return cast(jax.Array, net.apply(params, obs, method=ActorCritic.critic))

    return Policy(init, apply, actor, critic, distribution_for(spec.action_kind))
