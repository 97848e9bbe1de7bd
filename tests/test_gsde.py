"""gSDE inside the compiled rollout: when exploration matrices are redrawn, tanh squashing, and the
env receiving squashed actions rescaled onto its bounds. (Distribution and update parity with SB3's
own code are in test_sb3_parity.py.)"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from a2c_jax.config import A2CConfig, HParams
from a2c_jax.core.evaluate import evaluate
from a2c_jax.core.rollout import rollout
from a2c_jax.core.train import build_agent, init_state, make_train
from a2c_jax.envs import VecEnv, make_env

# Two actor features (hidden_sizes=(2,)) and one action: each env's noise latent_t @ W is a 2-vector
# dot product, so two steps determine W and a third step tells whether it was the same matrix.
BASE = A2CConfig(
    env_id="Pendulum-v1", num_envs=4, num_steps=7, total_timesteps=4 * 7 * 4, hidden_sizes=(2,),
    use_sde=True, log_std_init=-0.5,
)  # fmt: skip


def rollout_noise(config: A2CConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One rollout from fresh parameters: (actions [T, N, 1], noise [T, N], latent [T, N, 2]), the
    noise being the pre-squash action minus the policy's mean, recomputed from the stored obs."""
    agent = build_agent(config)
    hp = HParams().as_arrays()
    state = init_state(agent, hp, jax.random.PRNGKey(3))
    traj = rollout(agent.policy, state.params, agent.vec_env, state.env_state, state.obs, (),
                   jax.random.PRNGKey(4), config.num_steps, hp.gamma)[3]  # fmt: skip
    pi = agent.policy.act(state.params, (), traj.obs)[1]
    action = np.asarray(traj.action, np.float64)
    pre_squash = np.arctanh(action) if config.squash_output else action
    return action, pre_squash[..., 0] - np.asarray(pi.mean, np.float64)[..., 0], np.asarray(pi.latent, np.float64)


def predicts(noise: np.ndarray, latent: np.ndarray, fit: tuple[int, int], t: int) -> np.ndarray:
    """For each env [N]: does the W solved from steps `fit` give step t's noise?"""
    out = []
    for n in range(noise.shape[1]):
        w = np.linalg.solve(latent[list(fit), n], noise[list(fit), n])
        out.append(abs(latent[t, n] @ w - noise[t, n]) < 1e-4 * (1 + abs(noise[t, n])))
    return np.array(out)


@pytest.mark.parametrize("squash", [False, True])
def test_exploration_matrices_redrawn_every_sde_sample_freq_steps(squash):
    """freq 3 over 7 steps: one W per env for steps 0-2, a new one for 3-5, another at 6."""
    action, noise, latent = rollout_noise(dataclasses.replace(BASE, sde_sample_freq=3, squash_output=squash))
    assert np.all(np.abs(noise) > 1e-3)  # exploration happens
    assert predicts(noise, latent, (0, 1), 2).all()
    assert predicts(noise, latent, (3, 4), 5).all()
    assert not predicts(noise, latent, (0, 1), 3).any()
    assert not predicts(noise, latent, (3, 4), 6).any()
    if squash:
        assert np.all(np.abs(action) < 1.0)


def test_exploration_matrix_held_for_the_whole_rollout_by_default():
    """freq -1: the matrix drawn at the rollout's start explains every step."""
    _, noise, latent = rollout_noise(BASE)
    for t in range(2, BASE.num_steps):
        assert predicts(noise, latent, (0, 1), t).all()


def test_squashed_actions_are_rescaled_onto_the_bounds_not_clipped():
    """A squashed 0.9 reaches Pendulum (bounds +-2) as 1.8, while without squashing 0.9 stays 0.9."""
    env, params, spec = make_env("Pendulum-v1")
    key = jax.random.PRNGKey(0)
    _, state = VecEnv(env, params, spec, 1).reset(key)
    step_key = jax.random.PRNGKey(1)

    def next_obs(vec_env: VecEnv) -> np.ndarray:
        return np.asarray(vec_env.step(step_key, state, jnp.array([[0.9]]), jnp.float32(0.99))[0])

    def gymnax_obs(torque: float) -> np.ndarray:
        inner = jax.tree.map(lambda x: x[0], state.inner)
        key0 = jax.random.split(step_key, 1)[0]
        return np.asarray(env.step(key0, inner, jnp.array([torque]), params)[0])[None]

    np.testing.assert_allclose(next_obs(VecEnv(env, params, spec, 1, squash_actions=True)), gymnax_obs(1.8), atol=1e-6)
    np.testing.assert_allclose(next_obs(VecEnv(env, params, spec, 1)), gymnax_obs(0.9), atol=1e-6)
    assert not np.allclose(gymnax_obs(1.8), gymnax_obs(0.9))


def test_squashed_gsde_trains_and_evaluates():
    """A few compiled updates with squash_output: finite losses, an entropy estimate that moves,
    and greedy evaluation episodes with finite returns."""
    config = dataclasses.replace(BASE, squash_output=True, sde_sample_freq=2)
    agent = build_agent(config)
    state, metrics = jax.jit(make_train(agent))(jax.random.PRNGKey(0), HParams().as_arrays())
    for name in ("loss", "policy_loss", "value_loss", "entropy"):
        assert np.all(np.isfinite(np.asarray(getattr(metrics, name)))), name
    assert np.ptp(np.asarray(metrics.entropy)) > 0  # -log_prob of the taken actions, not a constant
    result = evaluate(agent, state.params, state.env_state.obs_rms, jax.random.PRNGKey(1), 2)
    assert np.all(np.isfinite(np.asarray(result.returns)))
    assert np.all(np.asarray(result.lengths) == 200)
