"""The training program: determinism, vmap over seeds and hyperparameters, chunking, schedules,
optimizer semantics (PyTorch's RMSprop/Adam written in NumPy), and input validation."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a2c_jax.config import A2CConfig, ConfigError, HParams, preset
from a2c_jax.core.train import build_agent, init_state, learning_rate, make_optimizer, make_run_chunk, make_train

HP = HParams(lr=1e-3, gamma=0.99, gae_lambda=0.95, ent_coef=0.01)


@pytest.fixture(scope="module")
def train_jit(small_config):
    return jax.jit(make_train(small_config))


@pytest.fixture(scope="module")
def train_vmap(small_config):
    return jax.jit(jax.vmap(make_train(small_config)))


def member(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_trees_close(a, b, rtol=1e-3, atol=1e-5):
    """Float32 agreement; batched and unbatched matmuls round differently, and 12 updates amplify it."""
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_same_seed_same_result_and_seeds_differ(train_jit):
    s1, m1 = train_jit(jax.random.PRNGKey(0), HP)
    s2, _ = train_jit(jax.random.PRNGKey(0), HP)
    s3, _ = train_jit(jax.random.PRNGKey(1), HP)
    for x, y in zip(leaves(s1.params), leaves(s2.params), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(leaves(s1.params)[0], leaves(s3.params)[0])
    chex.assert_shape(m1.loss, (12,))
    assert np.all(np.isfinite(np.asarray(m1.loss)))
    assert int(s1.update_step) == 12


def test_vmap_over_seeds_equals_separate_runs(train_jit, train_vmap):
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    hps = jax.tree.map(lambda x: jnp.full((3,), x, jnp.float32), HP)
    batched, metrics = train_vmap(keys, hps)
    for i in range(3):
        alone, alone_m = train_jit(keys[i], HP)
        assert_trees_close(member(batched.params, i), alone.params)
        np.testing.assert_allclose(metrics.loss[i], alone_m.loss, rtol=1e-3, atol=1e-4)


def test_vmap_over_hparams_equals_separate_runs(train_jit, train_vmap):
    members = [
        HP._replace(lr=3e-4, gamma=0.9),
        HP._replace(lr=2e-3, ent_coef=0.0, gae_lambda=1.0),
        HP._replace(vf_coef=0.25, max_grad_norm=1.0, rms_decay=0.9, eps=1e-3),
    ]
    stacked = jax.tree.map(lambda *xs: jnp.asarray(xs, jnp.float32), *members)
    keys = jnp.stack([jax.random.PRNGKey(0)] * 3)
    batched, _ = train_vmap(keys, stacked)
    finals = []
    for i, hp in enumerate(members):
        alone, _ = train_jit(keys[i], hp)
        assert_trees_close(member(batched.params, i), alone.params)
        finals.append(leaves(alone.params))
    # the hyperparameters really reach the program: members end in different places
    assert not np.allclose(finals[0][0], finals[1][0])
    assert not np.allclose(finals[1][0], finals[2][0])


def test_chunked_run_equals_fused_run(small_config, train_jit):
    fused, fused_m = train_jit(jax.random.PRNGKey(2), HP)
    agent = build_agent(small_config)
    chunk = jax.jit(make_run_chunk(agent, 5))
    state = init_state(agent, HP, jax.random.PRNGKey(2))
    losses = []
    for n in (5, 5, 2):
        state, m = chunk(state, HP.as_arrays(), jnp.int32(n))
        losses.append(np.asarray(m.loss)[:n])
        assert np.all(np.asarray(m.loss)[n:] == 0)  # rows past n stay empty
    assert int(state.update_step) == 12
    assert_trees_close(state.params, fused.params, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.concatenate(losses), fused_m.loss, rtol=1e-6)


def test_learning_rate_schedules():
    hp = HParams(lr=1e-3)
    const = A2CConfig(total_timesteps=400, num_envs=4, num_steps=10)  # 10 updates
    linear = dataclasses.replace(const, lr_schedule="linear")
    assert float(learning_rate(const, hp, jnp.int32(7))) == pytest.approx(1e-3)
    # SB3: progress_remaining is measured after the rollout, so update k uses 1 - (k + 1) / K
    got = [float(learning_rate(linear, hp, jnp.int32(k))) for k in range(10)]
    np.testing.assert_allclose(got, [1e-3 * (1 - (k + 1) / 10) for k in range(10)], rtol=1e-6, atol=1e-12)


def torch_rmsprop_reference(grads, lr, alpha, eps, max_norm):
    """torch.optim.RMSprop (no momentum, not centred) after clip_grad_norm_, in NumPy."""
    p, sq, out = np.zeros_like(grads[0]), np.zeros_like(grads[0]), []
    for g in grads:
        g = g * min(1.0, max_norm / (np.linalg.norm(g) + 1e-6))
        sq = alpha * sq + (1 - alpha) * g * g
        p = p - lr * g / (np.sqrt(sq) + eps)
        out.append(p.copy())
    return out


def torch_adam_reference(grads, lr, eps, max_norm, b1=0.9, b2=0.999):
    p, m, v, out = np.zeros_like(grads[0]), np.zeros_like(grads[0]), np.zeros_like(grads[0]), []
    for t, g in enumerate(grads, start=1):
        g = g * min(1.0, max_norm / (np.linalg.norm(g) + 1e-6))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(p.copy())
    return out


@pytest.mark.parametrize("kind", ["rmsprop", "adam"])
def test_optimizer_matches_pytorch_semantics(kind):
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=6) * s for s in (0.1, 3.0, 0.01, 1.0)]  # some above the clip norm
    hp = HParams(max_grad_norm=0.5, rms_decay=0.99, eps=1e-5).as_arrays()
    tx = make_optimizer(kind, hp, 7e-4)
    params = jnp.zeros(6)
    state = tx.init(params)
    ref = (
        torch_rmsprop_reference(grads, 7e-4, 0.99, 1e-5, 0.5)
        if kind == "rmsprop"
        else torch_adam_reference(grads, 7e-4, 1e-5, 0.5)
    )
    for g, expected in zip(grads, ref, strict=True):
        updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        params = params + updates
        np.testing.assert_allclose(params, expected, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_envs", 0, "num_envs=0 is invalid: must be a positive integer"),
        ("num_steps", -3, "num_steps=-3"),
        ("total_timesteps", 10, "total_timesteps=10 is invalid: must be >= num_envs \\* num_steps = 40"),
        ("hidden_sizes", (), "hidden_sizes"),
        ("optimizer", "sgd", "optimizer='sgd' is invalid: must be one of rmsprop, adam"),
        ("network", "lstm", "network='lstm' is invalid: must be one of mlp, cnn, gru"),
    ],
)
def test_config_validation(field, value, message):
    cfg = dataclasses.replace(A2CConfig(num_envs=8, num_steps=5), **{field: value})
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("lr", 0.0, "> 0"),
        ("lr", -1e-3, "> 0"),
        ("gamma", 0.0, "in \\(0, 1\\]"),
        ("gamma", 1.5, "in \\(0, 1\\]"),
        ("gae_lambda", -0.1, "in \\[0, 1\\]"),
        ("gae_lambda", 1.01, "in \\[0, 1\\]"),
        ("max_grad_norm", 0.0, "> 0"),
        ("ent_coef", float("nan"), ">= 0"),
        ("rms_decay", 1.0, "in \\[0, 1\\)"),
    ],
)
def test_hparams_validation(field, value, allowed):
    with pytest.raises(ConfigError, match=f"{field}=.* is invalid: must be {allowed}"):
        HParams()._replace(**{field: value}).validate()


def test_hparams_validation_checks_every_population_member():
    with pytest.raises(ConfigError, match=r"gamma=2\.0"):
        HParams(gamma=np.array([0.9, 2.0, 0.99])).validate()


def test_gamma_one_and_lambda_bounds_are_allowed():
    HParams(gamma=1.0, gae_lambda=0.0).validate()
    HParams(gae_lambda=1.0).validate()


def test_presets():
    cfg, hp = preset("zoo", "Pendulum-v1")
    assert (cfg.num_envs, cfg.num_steps, cfg.lr_schedule, cfg.normalize_observation) == (8, 8, "linear", True)
    assert (hp.gamma, hp.gae_lambda, hp.vf_coef) == (0.9, 0.9, 0.4)
    cfg, hp = preset("sb3", "Acrobot-v1")
    assert (cfg.num_steps, cfg.optimizer, hp.lr, hp.gae_lambda, hp.max_grad_norm) == (5, "rmsprop", 7e-4, 1.0, 0.5)
    with pytest.raises(ConfigError, match="preset='zoo' has no tuned values for env_id='Catch-bsuite'"):
        preset("zoo", "Catch-bsuite")
    with pytest.raises(ConfigError, match="preset='best'"):
        preset("best", "CartPole-v1")


def test_env_families_get_their_default_preset():
    """`brax:` and `craftax:` ids take their family's default (whatever the env name); gymnax ids and
    unknown namespaces get the generic default (CartPole's with SB3's lr and GAE lambda); sb3 stays SB3's
    for every family."""
    cfg, hp = preset("default", "brax:ant@spring")
    assert (cfg.num_envs, cfg.num_steps, cfg.optimizer, cfg.normalize_observation, hp.lr) == (
        32,
        16,
        "adam",
        True,
        3e-3,
    )
    cfg, hp = preset("default", "craftax:Craftax-Symbolic-v1")
    assert (cfg.hidden_sizes, cfg.num_steps, hp.gae_lambda, hp.ent_coef) == ((512, 512, 512), 16, 0.8, 0.01)
    cartpole, generic = preset("default", "CartPole-v1"), preset("default", "mine:corridor")
    assert (generic[0].num_envs, generic[0].lr_schedule) == (cartpole[0].num_envs, cartpole[0].lr_schedule)
    assert (float(cartpole[1].lr), float(cartpole[1].gae_lambda)) == (1e-3, 0.8)  # CartPole's own, for robustness
    assert (float(generic[1].lr), float(generic[1].gae_lambda)) == (7e-4, 1.0)  # SB3's for the rest
    assert preset("default", "Acrobot-v1")[1] == generic[1]
    assert preset("default", "gymnax:Pendulum-v1")[0].num_envs == 16
    assert preset("sb3", "brax:hopper")[0].optimizer == "rmsprop"
