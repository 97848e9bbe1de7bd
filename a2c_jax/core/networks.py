"""Actor-critic networks (flax.linen) and the `Policy` bundle the core functions use.

The default matches SB3's MlpPolicy for A2C: separate actor and critic MLPs [64, 64] tanh,
orthogonal init with gain sqrt(2) on hidden layers, 0.01 on the policy head and 1.0 on the value
head, zero biases, and a state-independent log-std for continuous actions.

Every policy carries a hidden state ("carry", a pytree whose leaves lead with the env axis N). For
the feed-forward networks ("mlp", "cnn") it is the empty tuple, so one rollout / loss code path
serves feed-forward and recurrent ("gru") policies alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import flax.linen as nn
import jax
import jax.numpy as jnp

from a2c_jax.config import A2CConfig, ConfigError
from a2c_jax.core.distributions import (
    GSDE,
    SQUASHED_GSDE,
    DistributionFns,
    GSDEParams,
    PiParams,
    distribution_for,
    gsde_std,
)
from a2c_jax.envs import EnvSpec

Params = Any
Carry = Any  # pytree, every leaf [N, ...]; () for feed-forward policies

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


# PyTorch's default for nn.Linear / nn.Conv2d weights (kaiming_uniform with a = sqrt(5)):
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases from the same range. It is what SB3 uses with
# `ortho_init=False` (with orthogonal init SB3 zeroes the biases). The biases matter for gSDE: with
# zero biases the actor's features are odd functions of the (normalised, near-zero) observation, so
# the state-dependent noise vanishes around the mean state and exploration stalls.
TORCH_DEFAULT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias(fan_in: int) -> Callable[..., jax.Array]:
    """PyTorch's default bias initialiser for a layer with `fan_in` inputs: U(-1/sqrt(fan_in), ...)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _kernel_init(scale: float, ortho: bool) -> Callable[..., jax.Array]:
    return orthogonal(scale) if ortho else TORCH_DEFAULT


def _dense(features: int, scale: float, ortho: bool, fan_in: int, name: str | None = None) -> nn.Dense:
    """A Dense layer initialised as SB3 does: orthogonal with gain `scale` and zero bias, or (ortho
    False) PyTorch's defaults for a layer with `fan_in` inputs."""
    bias_init = nn.initializers.zeros if ortho else torch_bias(fan_in)
    return nn.Dense(features, kernel_init=_kernel_init(scale, ortho), bias_init=bias_init, name=name)


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
            x = act(_dense(size, math.sqrt(2.0), self.ortho_init, x.shape[-1])(x))
        return x


class PatchConv(nn.Module):
    """A k x k "valid" convolution with stride 1 as one matmul over extracted patches (im2col).

    [B, H, W, C] -> [B, H - k + 1, W - k + 1, features]; kernel [k, k, C, features] as in nn.Conv.
    Same result as `lax.conv_general_dilated`, but XLA's CPU backend runs a convolution inside a
    compiled loop (our whole training run) several times slower than this dot product.
    """

    features: int
    kernel_size: int = 3
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
    bias_init: Callable[..., jax.Array] = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
        patches = jnp.concatenate([x[:, i : i + h, j : j + w, :] for i in range(k) for j in range(k)], axis=-1)
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        return patches @ kernel.reshape(-1, self.features) + bias


class CNNTorso(nn.Module):
    """[..., H, W, C] -> Conv 16 3x3 (valid) + activation -> flatten -> dense layers: [..., H_last]."""

    hidden_sizes: Sequence[int]
    activation: str
    ortho_init: bool = True

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        lead = obs.shape[:-3]
        x = obs.reshape((-1, *obs.shape[-3:]))
        init = _kernel_init(math.sqrt(2.0), self.ortho_init)
        bias_init = nn.initializers.zeros if self.ortho_init else torch_bias(3 * 3 * x.shape[-1])
        act = _ACTIVATIONS[self.activation]
        x = act(PatchConv(16, 3, init, bias_init, name="Conv_0")(x))
        x = x.reshape((*lead, -1))
        for size in self.hidden_sizes:
            x = act(_dense(size, math.sqrt(2.0), self.ortho_init, x.shape[-1])(x))
        return x


class ActorCritic(nn.Module):
    """Actor and critic over obs [..., *obs_shape].

    Feed-forward ("mlp", "cnn"): `actor(obs)` -> policy parameters, `critic(obs)` -> value [...].
    Recurrent ("gru"): an MLP over `hidden_sizes[:-1]` then a GRU cell of width `hidden_sizes[-1]`;
    `advance(carry, obs)` -> new carry {"pi": [..., H], "vf": [..., H]} ("vf" only without a shared
    torso), and `actor_head(carry)` / `critic_head(carry)` read the outputs from it.
    Policy parameters are logits [..., A] for discrete actions or (mean [..., D], log_std [D]).
    """

    spec: EnvSpec
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    network: str = "mlp"
    shared_torso: bool = False
    log_std_init: float = 0.0
    ortho_init: bool = True
    use_sde: bool = False
    full_std: bool = True
    use_expln: bool = False
    squash_output: bool = False

    def setup(self) -> None:
        ndim = len(self.spec.obs_shape)
        recurrent = self.network == "gru"
        dense_sizes = tuple(self.hidden_sizes[:-1] if recurrent else self.hidden_sizes)
        make_torso: Callable[[], nn.Module]
        if self.network == "cnn":
            make_torso = lambda: CNNTorso(dense_sizes, self.activation, self.ortho_init)
        else:
            make_torso = lambda: MLPTorso(dense_sizes, self.activation, ndim, self.ortho_init)
        init = _kernel_init(1.0, self.ortho_init)
        make_cell = lambda: nn.GRUCell(self.hidden_sizes[-1], kernel_init=init, recurrent_kernel_init=init)
        self.pi_torso = make_torso()
        if recurrent:
            self.pi_cell = make_cell()
        if not self.shared_torso:
            self.vf_torso = make_torso()
            if recurrent:
                self.vf_cell = make_cell()
        self.pi_head = _dense(self.spec.action_dim, 0.01, self.ortho_init, self.hidden_sizes[-1])
        self.vf_head = _dense(1, 1.0, self.ortho_init, self.hidden_sizes[-1])
        if self.spec.action_kind == "continuous":
            # gSDE learns the std of its exploration weights [F, D] (or [F, 1]), F the actor's features
            shape = (
                (self.hidden_sizes[-1], self.spec.action_dim if self.full_std else 1)
                if self.use_sde
                else (self.spec.action_dim,)
            )
            self.log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), shape)

    def _pi(self, features: jax.Array) -> PiParams:
        out = self.pi_head(features)
        if self.spec.action_kind == "continuous" and self.use_sde:
            return GSDEParams(out, gsde_std(self.log_std, self.spec.action_dim, self.use_expln), features)
        if self.spec.action_kind == "continuous":
            return out, self.log_std
        return out

    def actor(self, obs: jax.Array) -> PiParams:
        """Policy parameters for obs [..., *obs_shape] (feed-forward networks)."""
        return self._pi(self.pi_torso(obs))

    def critic(self, obs: jax.Array) -> jax.Array:
        """State value [...] for obs [..., *obs_shape] (feed-forward networks)."""
        torso = self.pi_torso if self.shared_torso else self.vf_torso
        return self.vf_head(torso(obs))[..., 0]

    def __call__(self, obs: jax.Array) -> tuple[PiParams, jax.Array]:
        return self.actor(obs), self.critic(obs)

    def advance(self, carry: dict[str, jax.Array], obs: jax.Array) -> dict[str, jax.Array]:
        """One recurrent step: carry {"pi"[, "vf"]: [..., H]} and obs [..., *obs_shape] -> new carry."""
        new = {"pi": self.pi_cell(carry["pi"], self.pi_torso(obs))[0]}
        if not self.shared_torso:
            new["vf"] = self.vf_cell(carry["vf"], self.vf_torso(obs))[0]
        return new

    def actor_head(self, carry: dict[str, jax.Array]) -> PiParams:
        """Policy parameters read from a recurrent carry."""
        return self._pi(carry["pi"])

    def critic_head(self, carry: dict[str, jax.Array]) -> jax.Array:
        """State value [...] read from a recurrent carry."""
        return self.vf_head(carry["pi" if self.shared_torso else "vf"])[..., 0]

    def init_recurrent(self, carry: dict[str, jax.Array], obs: jax.Array) -> tuple[PiParams, jax.Array]:
        """Touches every recurrent parameter (used only to initialise them)."""
        new = self.advance(carry, obs)
        return self.actor_head(new), self.critic_head(new)


class Policy(NamedTuple):
    """Pure functions of the parameters, built once per config; every one handles a hidden carry.

    - init(key) -> params.
    - initial_carry(n) -> carry for n environments (zeros; () for feed-forward policies).
    - act(params, carry, obs [N, ...]) -> (carry after obs, policy parameters [N, ...]).
    - unroll(params, carry, obs [T, N, ...], done [T, N]) -> (policy parameters [T, N, ...],
      values [T, N]): re-runs a rollout from its start carry, zeroing the carry after every step
      whose `done` is set, so a hidden state never crosses an episode boundary.
    - values(params, carry, obs [T, N, ...], done [T, N], final_obs [T, N, ...]) -> (V(obs_t),
      V(final_obs_t)), each [T, N]; final_obs_t is valued from the carry that saw obs_t.
    - dist: the action distribution's functions.
    - sde_sample_freq: 0 without gSDE; else how often (in steps) a rollout draws new exploration
      matrices (-1: once, at its start), as `A2CConfig.sde_sample_freq`.
    """

    init: Callable[[jax.Array], Params]
    initial_carry: Callable[[int], Carry]
    act: Callable[[Params, Carry, jax.Array], tuple[Carry, PiParams]]
    unroll: Callable[[Params, Carry, jax.Array, jax.Array], tuple[PiParams, jax.Array]]
    values: Callable[[Params, Carry, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
    dist: DistributionFns
    sde_sample_freq: int = 0


def reset_carry(carry: Carry, done: jax.Array) -> Carry:
    """Zero the rows of every carry leaf [N, ...] where done [N] is true (a no-op for ())."""
    return jax.tree.map(lambda c: jnp.where(done.reshape(done.shape + (1,) * (c.ndim - done.ndim)), 0.0, c), carry)


def feedforward_policy(
    init: Callable[[jax.Array], Params],
    actor: Callable[[Params, jax.Array], PiParams],
    critic: Callable[[Params, jax.Array], jax.Array],
    dist: DistributionFns,
) -> Policy:
    """A `Policy` from memoryless actor(params, obs [..., *obs]) and critic(params, obs) -> [...].

    The carry is (); `values` runs the critic once over obs and final_obs stacked along time.
    """

    def act(params: Params, carry: Carry, obs: jax.Array) -> tuple[Carry, PiParams]:
        return carry, actor(params, obs)

    def unroll(params: Params, carry: Carry, obs: jax.Array, done: jax.Array) -> tuple[PiParams, jax.Array]:
        return actor(params, obs), critic(params, obs)

    def values(
        params: Params, carry: Carry, obs: jax.Array, done: jax.Array, final_obs: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        both = critic(params, jnp.concatenate([obs, final_obs], axis=0))
        return both[: obs.shape[0]], both[obs.shape[0] :]

    return Policy(init, lambda n: (), act, unroll, values, dist)


def recurrent_policy(net: ActorCritic, spec: EnvSpec) -> Policy:
    """A `Policy` for a recurrent `ActorCritic`; the unroll is one `lax.scan` over time."""
    keys = ("pi",) if net.shared_torso else ("pi", "vf")

    def initial_carry(n: int) -> Carry:
        return {k: jnp.zeros((n, net.hidden_sizes[-1]), jnp.float32) for k in keys}

    def init(key: jax.Array) -> Params:
        return net.init(key, initial_carry(1), jnp.zeros((1, *spec.obs_shape)), method=ActorCritic.init_recurrent)

    def advance(params: Params, carry: Carry, obs: jax.Array) -> Carry:
        return net.apply(params, carry, obs, method=ActorCritic.advance)

    def act(params: Params, carry: Carry, obs: jax.Array) -> tuple[Carry, PiParams]:
        carry = advance(params, carry, obs)
        return carry, net.apply(params, carry, method=ActorCritic.actor_head)

    def hidden_states(params: Params, carry: Carry, obs: jax.Array, done: jax.Array) -> Carry:
        """The carry after each obs_t (before the reset at done_t): leaves [T, N, H]."""

        def step(c: Carry, xs: tuple[jax.Array, jax.Array]) -> tuple[Carry, Carry]:
            h = advance(params, c, xs[0])
            return reset_carry(h, xs[1]), h

        return jax.lax.scan(step, carry, (obs, done))[1]

    def unroll(params: Params, carry: Carry, obs: jax.Array, done: jax.Array) -> tuple[PiParams, jax.Array]:
        hs = hidden_states(params, carry, obs, done)
        return net.apply(params, hs, method=ActorCritic.actor_head), critic(params, hs)

    def critic(params: Params, carry: Carry) -> jax.Array:
        return cast(jax.Array, net.apply(params, carry, method=ActorCritic.critic_head))

    def values(
        params: Params, carry: Carry, obs: jax.Array, done: jax.Array, final_obs: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        hs = hidden_states(params, carry, obs, done)
        return critic(params, hs), critic(params, advance(params, hs, final_obs))

    return Policy(init, initial_carry, act, unroll, values, distribution(net))


def distribution(net: ActorCritic) -> DistributionFns:
    """The action distribution of `net`: Categorical, diagonal Gaussian, gSDE or tanh-squashed gSDE."""
    if net.use_sde:
        return SQUASHED_GSDE if net.squash_output else GSDE
    return distribution_for(net.spec.action_kind)


def make_policy(config: A2CConfig, spec: EnvSpec) -> Policy:
    """The ActorCritic for `config` and `spec`, wrapped as pure functions."""
    if config.use_sde and spec.action_kind != "continuous":
        raise ConfigError(
            f"use_sde=True is invalid for env_id={spec.env_id!r}: gSDE needs a continuous (Box) action space, "
            "this one is discrete"
        )
    if config.network == "cnn" and len(spec.obs_shape) != 3:
        raise ConfigError(
            f"network='cnn' needs image observations [H, W, C]; env_id={spec.env_id!r} has observations of "
            f"shape {spec.obs_shape}: use network='mlp' or 'gru'"
        )
    net = ActorCritic(
        spec=spec,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        network=config.network,
        shared_torso=config.shared_torso,
        log_std_init=config.log_std_init,
        ortho_init=config.ortho_init,
        use_sde=config.use_sde,
        full_std=config.full_std,
        use_expln=config.use_expln,
        squash_output=config.squash_output,
    )
    sde_freq = config.sde_sample_freq if config.use_sde else 0
    if config.network == "gru":
        return recurrent_policy(net, spec)._replace(sde_sample_freq=sde_freq)

    def init(key: jax.Array) -> Params:
        return net.init(key, jnp.zeros((1, *spec.obs_shape), jnp.float32))

    def actor(params: Params, obs: jax.Array) -> PiParams:
        return net.apply(params, obs, method=ActorCritic.actor)

    def critic(params: Params, obs: jax.Array) -> jax.Array:
        return cast(jax.Array, net.apply(params, obs, method=ActorCritic.critic))

    return feedforward_policy(init, actor, critic, distribution(net))._replace(sde_sample_freq=sde_freq)
