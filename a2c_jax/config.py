"""Static configuration, traced hyperparameters, validation and presets.

`A2CConfig` holds everything that changes a shape or the structure of the compiled program (env id,
number of environments, rollout length, network, optimizer kind). It is a frozen, hashable dataclass.

`HParams` holds every scalar a sweep may vary. It is a NamedTuple, so a pytree to JAX without any
registration, whose leaves stay traced: `jax.vmap(train, in_axes=(0, 0))(keys, hparams_batch)`
compiles once for a population.

This module imports neither JAX nor NumPy at load time, so the CLI can build its flags and print
help without paying for them (`a2c-jax --help` starts in well under a second).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

Activation = Literal["tanh", "relu"]
Network = Literal["mlp", "cnn", "gru"]
OptimizerKind = Literal["rmsprop", "adam"]
Schedule = Literal["constant", "linear"]
PresetName = Literal["default", "sb3", "zoo"]


class ConfigError(ValueError):
    """A configuration value is outside what is allowed; the message names field, value and range."""


# --- the shared validators: every "FIELD=VALUE is invalid: must be ALLOWED" of the package --------


def invalid(field: str, value: Any, allowed: str) -> ConfigError:
    """The one-line error of every bad value: it names the field, the value and what is allowed."""
    return ConfigError(f"{field}={value!r} is invalid: must be {allowed}")


def _fail(field: str, value: Any, allowed: str) -> None:
    raise invalid(field, value, allowed)


def check_int(field: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """`value` when it is an integer (not a bool) in [low, high]; else ConfigError ("a positive integer",
    "an integer >= LOW" or "an integer in [LOW, HIGH]")."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        if high is not None:
            raise invalid(field, value, f"an integer in [{low}, {high}]")
        raise invalid(field, value, "a positive integer" if low == 1 else f"an integer >= {low}")
    return value


def check_number(
    field: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """`value` as a float when it is a finite number in the range (each end open or closed); else
    ConfigError ("> 0", ">= 0", "in (0, 1]", ...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, value, "a number " + _range_text(low, low_open, high, high_open))
    v = float(value)
    bad_low = v <= low if low_open else v < low
    bad_high = v >= high if high_open else v > high
    if not math.isfinite(v) or bad_low or bad_high:
        raise invalid(field, value, _range_text(low, low_open, high, high_open))
    return v


def check_choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`; else ConfigError listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise invalid(field, value, "one of " + ", ".join(allowed))
    return value


@dataclasses.dataclass(frozen=True)
class A2CConfig:
    """Static (shape-determining) settings of one A2C training program.

    Attributes:
        env_id: environment id: a gymnax id ("CartPole-v1", also written "gymnax:CartPole-v1"), or
            "namespace:name" for another family: "brax:hopper" (or "brax:ant@spring"),
            "craftax:Craftax-Symbolic-v1" (each with its extra), or one registered with
            `envs.register_env_family`.
        num_envs: N, environments stepped in parallel.
        num_steps: T, rollout length per update; one update consumes N * T env steps.
        total_timesteps: env steps to train for; rounded down to whole updates.
        hidden_sizes: widths of the layers of each torso (for "gru" the last one is the GRU's width).
        network: "mlp" (flattens any observation); "cnn" for image observations [H, W, C]: a 3x3
            convolution with 16 channels (the MinAtar paper's network) before the dense layers; or
            "gru", a recurrent policy for partially observed tasks: dense layers, then a GRU cell
            whose hidden state is reset at every episode end.
        activation: nonlinearity of the hidden layers.
        shared_torso: one torso for actor and critic (else two separate MLPs, as SB3).
        optimizer: "rmsprop" (SB3's A2C default) or "adam".
        lr_schedule: "constant", or "linear" decay to zero over training (SB3's `lin_` schedules).
        normalize_observation: running mean/std observation normalisation (SB3 VecNormalize).
        normalize_reward: scale rewards by the running std of the discounted return.
        normalize_advantage: standardise advantages within each batch.
        log_std_init: initial log standard deviation of a Gaussian policy.
        ortho_init: orthogonal initialisation (sqrt 2 hidden, 0.01 policy, 1.0 value heads); else
            PyTorch's default layer initialisation (what SB3 uses with ortho_init=False).
        use_sde: generalised state-dependent exploration (gSDE, continuous actions): the noise is
            latent @ W with the actor's last features and a matrix W ~ N(0, std^2) per env, std learned.
        sde_sample_freq: draw new W every this many steps (-1: only at the start of each rollout).
        full_std: one learned std per (feature, action) pair; else one per feature.
        use_expln: expln instead of exp for the std (keeps it from growing too fast).
        squash_output: (gSDE only, as SB3) squash actions with tanh into (-1, 1) and rescale them
            linearly to the action bounds, instead of clipping; the log-prob gets tanh's Jacobian
            correction and the entropy bonus is estimated by -log_prob (no closed form).
    """

    env_id: str = "CartPole-v1"
    num_envs: int = 8
    num_steps: int = 5
    total_timesteps: int = 500_000
    hidden_sizes: tuple[int, ...] = (64, 64)
    network: Network = "mlp"
    activation: Activation = "tanh"
    shared_torso: bool = False
    optimizer: OptimizerKind = "rmsprop"
    lr_schedule: Schedule = "constant"
    normalize_observation: bool = False
    normalize_reward: bool = False
    normalize_advantage: bool = False
    log_std_init: float = 0.0
    ortho_init: bool = True
    use_sde: bool = False
    sde_sample_freq: int = -1
    full_std: bool = True
    use_expln: bool = False
    squash_output: bool = False

    @property
    def batch_size(self) -> int:
        """Env steps per update, N * T."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Whole updates that fit in `total_timesteps`."""
        return self.total_timesteps // self.batch_size

    def validate(self) -> A2CConfig:
        """Raise ConfigError naming the first bad field; return self when all are valid."""
        for name in ("num_envs", "num_steps", "total_timesteps"):
            check_int(name, getattr(self, name))
        if not self.hidden_sizes or any(
            isinstance(h, bool) or not isinstance(h, int) or h <= 0 for h in self.hidden_sizes
        ):
            _fail("hidden_sizes", self.hidden_sizes, "a non-empty tuple of positive integers")
        if self.total_timesteps < self.batch_size:
            _fail(
                "total_timesteps",
                self.total_timesteps,
                f">= num_envs * num_steps = {self.batch_size} (at least one update)",
            )
        if self.num_updates > MAX_UPDATES:
            _fail(
                "total_timesteps",
                self.total_timesteps,
                f"<= {MAX_UPDATES} updates x num_envs x num_steps = {MAX_UPDATES * self.batch_size} "
                "(update counters are int32)",
            )
        for name in ("activation", "network", "optimizer", "lr_schedule"):
            check_choice(name, getattr(self, name), choices(name))
        if not math.isfinite(self.log_std_init):
            _fail("log_std_init", self.log_std_init, "a finite float")
        freq = self.sde_sample_freq
        if isinstance(freq, bool) or not isinstance(freq, int) or freq == 0 or freq < -1:
            _fail("sde_sample_freq", freq, "-1 (new noise only at the start of each rollout) or an integer >= 1")
        if self.squash_output and not self.use_sde:
            _fail("squash_output", self.squash_output, "False unless use_sde=True (tanh squashing comes with gSDE)")
        return self


MAX_UPDATES = 2**31 - 1
"""The largest update count: `TrainState.update_step` is an int32."""

MAX_SEED = 2**31 - 1
"""Seeds are int32 so that populations can carry them as arrays; larger ones would wrap and collide."""


def choices(name: str) -> tuple[str, ...]:
    """The allowed values of a Literal-typed A2CConfig field (read from its annotation)."""
    return typing.get_args(typing.get_type_hints(A2CConfig)[name])


def check_seed(field: str, value: Any) -> int:
    """Return `value` if it is an integer seed in [0, MAX_SEED], else raise ConfigError."""
    check_int(field, value, 0, MAX_SEED)
    return value


class HParams(NamedTuple):
    """Traced scalar hyperparameters; every leaf may carry a leading population axis.

    Attributes:
        lr: learning rate (initial value when `lr_schedule="linear"`).
        gamma: discount factor in (0, 1].
        gae_lambda: GAE lambda in [0, 1]; 1.0 gives Monte-Carlo-style n-step returns (SB3 A2C).
        ent_coef: weight of the entropy bonus.
        vf_coef: weight of the value loss.
        max_grad_norm: global gradient-norm clip.
        rms_decay: RMSprop's smoothing constant (alpha); unused by Adam.
        eps: optimizer epsilon (added outside the square root, as PyTorch does).
    """

    lr: Any = 7e-4
    gamma: Any = 0.99
    gae_lambda: Any = 1.0
    ent_coef: Any = 0.0
    vf_coef: Any = 0.5
    max_grad_norm: Any = 0.5
    rms_decay: Any = 0.99
    eps: Any = 1e-5

    def replace(self, **changes: Any) -> HParams:
        """A copy with `changes` applied (as flax.struct dataclasses spell it; `_replace` does the same)."""
        return self._replace(**changes)

    def as_arrays(self) -> HParams:
        """Same values as float32 arrays (so Python floats and arrays trace alike)."""
        import jax.numpy as jnp

        return HParams(*(jnp.asarray(x, jnp.float32) for x in self))

    def to_dict(self) -> dict[str, Any]:
        """Plain Python floats (or lists for batched leaves), for JSON."""
        import numpy as np

        return {name: np.asarray(value).tolist() for name, value in zip(self._fields, self, strict=True)}

    def validate(self) -> HParams:
        """Raise ConfigError for the first value out of range (checks every population member)."""
        import numpy as np

        for name, (lo, lo_open, hi, hi_open) in HPARAM_RANGES.items():
            for v in np.asarray(getattr(self, name), dtype=np.float64).reshape(-1):
                check_number(name, float(v), lo, hi, lo_open, hi_open)
        return self


# name -> (low, low is open, high, high is open)
HPARAM_RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "lr": (0.0, True, math.inf, True),
    "gamma": (0.0, True, 1.0, False),
    "gae_lambda": (0.0, False, 1.0, False),
    "ent_coef": (0.0, False, math.inf, True),
    "vf_coef": (0.0, False, math.inf, True),
    "max_grad_norm": (0.0, True, math.inf, True),
    "rms_decay": (0.0, False, 1.0, True),
    "eps": (0.0, True, math.inf, True),
}


def _range_text(lo: float, lo_open: bool, hi: float, hi_open: bool) -> str:
    if hi == math.inf:
        return f"> {lo:g}" if lo_open else f">= {lo:g}"
    return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


HPARAM_NAMES: tuple[str, ...] = HParams._fields
CONFIG_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(A2CConfig))


def coerce_value(name: str, kind: Any, value: Any) -> Any:
    """Check a value read from a JSON file against the annotated type `kind` of field `name`.

    Returns the value typed for the dataclass (tuples for lists, floats for numbers). Raises
    ConfigError naming the field, the value and what is allowed: booleans must be JSON true/false
    (the string "false" is refused, never read as True), integers whole numbers.
    """
    if typing.get_origin(kind) is Literal:
        check_choice(name, value, typing.get_args(kind))
    elif typing.get_origin(kind) is tuple and typing.get_args(kind)[0] is str:
        if not isinstance(value, list | tuple) or not all(isinstance(h, str) for h in value):
            _fail(name, value, 'a list of strings, e.g. ["\\n"]')
        return tuple(value)
    elif typing.get_origin(kind) is tuple:
        if not isinstance(value, list | tuple) or any(isinstance(h, bool) or not isinstance(h, int) for h in value):
            _fail(name, value, "a list of integers, e.g. [64, 64]")
        return tuple(value)
    elif kind is bool:
        if not isinstance(value, bool):
            _fail(name, value, "true or false (a JSON boolean)")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(name, value, "an integer")
    elif kind is float or kind is Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(name, value, "a number")
        return float(value)
    elif kind is str and not isinstance(value, str):
        _fail(name, value, "a string")
    return value


def coerce_setting(name: str, value: Any) -> Any:
    """`coerce_value` for an A2CConfig or HParams field; unknown names raise ConfigError."""
    if name in HPARAM_NAMES:
        return coerce_value(name, float, value)
    if name not in CONFIG_NAMES:
        known = ", ".join(CONFIG_NAMES + HPARAM_NAMES)
        raise ConfigError(f"unknown setting {name!r}: known settings are {known}")
    return coerce_value(name, typing.get_type_hints(A2CConfig)[name], value)


def coerce_dataclass_fields(cls: type, data: Any, source: str) -> dict[str, Any]:
    """Typed keyword arguments for dataclass `cls` from a JSON object; errors are prefixed by `source`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a JSON object, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    out = {}
    for name, value in data.items():
        if name not in hints:
            raise ConfigError(f"{source}: unknown field {name!r}: known fields are {', '.join(hints)}")
        try:
            out[name] = coerce_value(name, hints[name], value)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    return out


def split_overrides(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a flat mapping into (A2CConfig fields, HParams fields); unknown keys raise ConfigError."""
    config: dict[str, Any] = {}
    hparams: dict[str, Any] = {}
    for key, value in values.items():
        if key in CONFIG_NAMES:
            config[key] = tuple(value) if key == "hidden_sizes" else value
        elif key in HPARAM_NAMES:
            hparams[key] = value
        else:
            known = ", ".join(CONFIG_NAMES + HPARAM_NAMES)
            raise ConfigError(f"unknown setting {key!r}: known settings are {known}")
    return config, hparams


def flat_settings(config: A2CConfig, hparams: HParams) -> dict[str, Any]:
    """Every config and hyperparameter value in one flat JSON-friendly dict (a `--config` file)."""
    flat = dataclasses.asdict(config)
    flat["hidden_sizes"] = list(config.hidden_sizes)
    flat.update({k: float(v) for k, v in hparams.to_dict().items()})
    return flat


def preset(name: str, env_id: str = "CartPole-v1") -> tuple[A2CConfig, HParams]:
    """(A2CConfig, HParams) of preset `name` for `env_id` (the tables live in `a2c_jax.presets`)."""
    from a2c_jax.presets import preset as from_tables

    return from_tables(name, env_id)
