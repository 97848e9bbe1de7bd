"""Network shapes (chex), SB3's orthogonal initialisation, and vmapped initialisation."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a2c_jax.config import A2CConfig
from a2c_jax.core.networks import make_policy, orthogonal
from a2c_jax.envs import make_env


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Catch-bsuite"])
def test_output_shapes(env_id, shared):
    _, _, spec = make_env(env_id)
    policy = make_policy(A2CConfig(env_id=env_id, shared_torso=shared), spec)
    params = policy.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((3, 5, *spec.obs_shape))
    pi, value = policy.unroll(params, (), obs, jnp.zeros((3, 5), bool))
    chex.assert_shape(value, (3, 5))
    if spec.action_kind == "discrete":
        chex.assert_shape(pi, (3, 5, spec.action_dim))
    else:
        chex.assert_shape(pi[0], (3, 5, spec.action_dim))
        chex.assert_shape(pi[1], (spec.action_dim,))
    action = policy.dist.sample(jax.random.PRNGKey(1), pi)
    chex.assert_shape(policy.dist.log_prob(pi, action), (3, 5))
    n_layers = len(jax.tree.leaves(params["params"]))
    assert n_layers == (2 * 2 + 4 if shared else 2 * 4 + 4) + (spec.action_kind == "continuous")


def test_sb3_initialisation_gains():
    _, _, spec = make_env("CartPole-v1")
    params = make_policy(A2CConfig(), spec).init(jax.random.PRNGKey(0))["params"]

    def gram(w):
        w = np.asarray(w, np.float64)
        return w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T

    for torso in ("pi_torso", "vf_torso"):
        for layer in params[torso].values():
            g = gram(layer["kernel"])
            np.testing.assert_allclose(g, 2.0 * np.eye(len(g)), atol=1e-5)
            assert np.all(np.asarray(layer["bias"]) == 0)
    np.testing.assert_allclose(gram(params["pi_head"]["kernel"]), 1e-4 * np.eye(2), atol=1e-9)
    np.testing.assert_allclose(gram(params["vf_head"]["kernel"]), np.eye(1), atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (3, 5, 8)])
def test_orthogonal_rows_or_columns(shape):
    w = np.asarray(orthogonal(1.0)(jax.random.PRNGKey(3), shape), np.float64).reshape(-1, shape[-1])
    g = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(g, np.eye(len(g)), atol=1e-5)


def test_vmapped_initialisation_gives_distinct_orthogonal_members():
    _, _, spec = make_env("CartPole-v1")
    policy = make_policy(A2CConfig(), spec)
    params = jax.jit(jax.vmap(policy.init))(jax.random.split(jax.random.PRNGKey(0), 6))
    kernels = np.asarray(params["params"]["pi_torso"]["Dense_1"]["kernel"], np.float64)
    assert kernels.shape == (6, 64, 64)
    for k in kernels:
        np.testing.assert_allclose(k.T @ k, 2.0 * np.eye(64), atol=1e-4)
    assert not np.allclose(kernels[0], kernels[1])


@pytest.mark.slow
def test_cnn_torso_shapes_and_training_on_minatar():
    from a2c_jax.config import HParams
    from a2c_jax.core.train import make_train

    config = A2CConfig(env_id="Breakout-MinAtar", network="cnn", hidden_sizes=(32,), activation="relu",
                       num_envs=2, num_steps=4, total_timesteps=16)  # fmt: skip
    _, _, spec = make_env(config.env_id)
    policy = make_policy(config, spec)
    params = policy.init(jax.random.PRNGKey(0))
    conv = params["params"]["pi_torso"]["Conv_0"]["kernel"]
    chex.assert_shape(conv, (3, 3, spec.obs_shape[-1], 16))
    chex.assert_shape(params["params"]["pi_torso"]["Dense_0"]["kernel"], (8 * 8 * 16, 32))  # 10x10 -> 8x8 valid
    logits, value = policy.unroll(params, (), jnp.zeros((3, 5, *spec.obs_shape)), jnp.zeros((3, 5), bool))
    chex.assert_shape(logits, (3, 5, spec.action_dim))
    chex.assert_shape(value, (3, 5))
    state, metrics = jax.jit(make_train(config))(jax.random.PRNGKey(0), HParams())
    assert np.all(np.isfinite(np.asarray(metrics.loss))) and int(state.update_step) == 2


def test_cnn_torso_rejects_vector_observations():
    from a2c_jax.config import ConfigError

    _, _, spec = make_env("CartPole-v1")
    with pytest.raises(ConfigError, match=r"network='cnn' needs image observations \[H, W, C\]; env_id='CartPole-v1'"):
        make_policy(A2CConfig(network="cnn"), spec)


def test_patch_conv_equals_xla_convolution():
    from a2c_jax.core.networks import PatchConv

    x = jax.random.normal(jax.random.PRNGKey(0), (2, 10, 10, 4))
    conv = PatchConv(16, 3)
    params = conv.init(jax.random.PRNGKey(1), x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias too
    ref = jax.lax.conv_general_dilated(
        x, params["params"]["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    out = conv.apply(params, x)
    chex.assert_shape(out, (2, 8, 8, 16))
    np.testing.assert_allclose(out, ref + params["params"]["bias"], rtol=1e-5, atol=1e-5)


def test_minatar_games_get_the_cnn_preset():
    from a2c_jax.config import preset
    from a2c_jax.presets import MINATAR_GAMES

    assert len(MINATAR_GAMES) == 5
    for game in MINATAR_GAMES:
        config, hparams = preset("default", game)
        assert (config.network, config.shared_torso, config.hidden_sizes) == ("cnn", True, (128,))
        assert float(hparams.ent_coef) == 0.05


def test_non_orthogonal_init_is_pytorch_default():
    """ortho_init=False draws weights and biases like torch.nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    import dataclasses

    _, _, spec = make_env("CartPole-v1")
    config = dataclasses.replace(A2CConfig(), ortho_init=False, hidden_sizes=(256, 256))
    params = make_policy(config, spec).init(jax.random.PRNGKey(0))["params"]
    w = np.asarray(params["pi_torso"]["Dense_1"]["kernel"], np.float64)  # fan_in 256
    bound = 1.0 / np.sqrt(256)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    np.testing.assert_allclose(w.var(), bound**2 / 3, rtol=0.03)  # variance of U(-b, b) is b^2 / 3
    first = np.asarray(params["pi_torso"]["Dense_0"]["bias"], np.float64)  # fan_in 4 (CartPole's obs)
    heads = [np.asarray(params[h]["bias"], np.float64) for h in ("pi_head", "vf_head")]  # fan_in 256
    biases = np.concatenate([np.asarray(params["pi_torso"]["Dense_1"]["bias"]), *heads])
    assert np.abs(first).max() <= 0.5 and np.abs(first).max() > 0.4 and np.unique(first).size == 256
    assert np.abs(biases).max() <= bound and np.abs(biases).max() > 0.9 * bound


def test_non_orthogonal_init_conv_bias_is_pytorch_default():
    """With ortho_init=False the CNN's convolution bias is drawn like torch.nn.Conv2d's:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 3 * 3 * channels; orthogonal init keeps it zero."""
    import dataclasses

    _, _, spec = make_env("Breakout-MinAtar")
    channels = spec.obs_shape[-1]
    config = dataclasses.replace(A2CConfig(env_id="Breakout-MinAtar", network="cnn"), ortho_init=False)
    bias = np.asarray(make_policy(config, spec).init(jax.random.PRNGKey(0))["params"]["pi_torso"]["Conv_0"]["bias"])
    bound = 1.0 / np.sqrt(9 * channels)
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.5 * bound and np.unique(bias).size == 16
    ortho = make_policy(dataclasses.replace(config, ortho_init=True), spec).init(jax.random.PRNGKey(0))
    assert not np.any(np.asarray(ortho["params"]["pi_torso"]["Conv_0"]["bias"]))
