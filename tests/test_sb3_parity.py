"""One-update parity with Stable-Baselines3's A2C ("A2C is a special case of PPO", Huang et al. 2022).

SB3's initial weights are copied into a2c_jax; both sides get the same rollout (2 envs x 5 steps,
with one terminated and one truncated step); SB3 fills its own RolloutBuffer exactly as its
collect_rollouts does (time-limit bootstrap added to the reward) and runs A2C.train(); a2c_jax
computes its batch with make_batch and applies one update. Returns, advantages and every parameter
must agree to float32 tolerance. Needs the `baselines` extra: it fails, not skips, without it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure

from a2c_jax.config import A2CConfig, HParams
from a2c_jax.envs import make_env
from a2c_jax.losses import a2c_loss
from a2c_jax.networks import make_policy
from a2c_jax.rollout import Transition
from a2c_jax.train import make_batch, make_optimizer

T, N, GAMMA, LAMBDA = 5, 2, 0.99, 0.95


def sb3_params_to_flax(model: A2C) -> dict:
    """SB3 MlpPolicy weights (torch Linear: W [out, in]) -> a2c_jax's flax params (kernel [in, out])."""
    p = model.policy
    dense = lambda layer: {
        "kernel": jnp.asarray(layer.weight.detach().numpy().T),
        "bias": jnp.asarray(layer.bias.detach().numpy()),
    }
    torso = lambda net: {"Dense_0": dense(net[0]), "Dense_1": dense(net[2])}  # Linear, Tanh, Linear, Tanh
    return {
        "params": {
            "pi_torso": torso(p.mlp_extractor.policy_net),
            "vf_torso": torso(p.mlp_extractor.value_net),
            "pi_head": dense(p.action_net),
            "vf_head": dense(p.value_net),
        }
    }


def synthetic_rollout(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(T + 1, N, 4)).astype(np.float32) * 0.5  # obs[T] is the observation after the rollout
    actions = rng.integers(0, 2, size=(T, N))
    rewards = rng.uniform(0.5, 1.5, size=(T, N)).astype(np.float32)
    terminated = np.zeros((T, N), bool)
    truncated = np.zeros((T, N), bool)
    terminated[2, 0] = True
    truncated[3, 1] = True
    final_obs = obs[1:].copy()
    terminal = rng.normal(size=(T, N, 4)).astype(np.float32) * 0.5  # pre-reset observations at episode ends
    done = terminated | truncated
    final_obs[done] = terminal[done]
    return {"obs": obs, "actions": actions, "rewards": rewards, "terminated": terminated,
            "truncated": truncated, "final_obs": final_obs}  # fmt: skip


def sb3_one_update(model: A2C, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """Fill SB3's RolloutBuffer as collect_rollouts does, then run one A2C.train()."""
    policy, buf = model.policy, model.rollout_buffer
    buf.reset()
    episode_starts = np.zeros(N, np.float32)
    to_t = lambda x: torch.as_tensor(x)
    with torch.no_grad():
        for t in range(T):
            obs = to_t(data["obs"][t])
            actions = to_t(data["actions"][t])
            values, log_probs, _ = policy.evaluate_actions(obs, actions)
            rewards = data["rewards"][t].copy()
            for i in range(N):
                if data["truncated"][t, i]:  # SB3: TimeLimit.truncated -> reward += gamma * V(terminal_obs)
                    rewards[i] += GAMMA * policy.predict_values(to_t(data["final_obs"][t, i][None]))[0].item()
            buf.add(data["obs"][t], data["actions"][t][:, None], rewards, episode_starts, values.flatten(), log_probs)
            episode_starts = (data["terminated"][t] | data["truncated"][t]).astype(np.float32)
        last_values = policy.predict_values(to_t(data["obs"][T]))
    buf.compute_returns_and_advantage(last_values=last_values, dones=episode_starts)
    advantages, returns = buf.advantages.copy(), buf.returns.copy()
    model.train()
    return advantages, returns


@pytest.mark.parametrize("normalize_advantage", [False, True])
def test_one_update_matches_sb3(normalize_advantage):
    torch.manual_seed(0)
    model = A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=N, seed=0), n_steps=T, gamma=GAMMA,
                gae_lambda=LAMBDA, ent_coef=0.01, seed=0, device="cpu",
                normalize_advantage=normalize_advantage)  # fmt: skip
    model.set_logger(configure(None, []))
    params = sb3_params_to_flax(model)
    data = synthetic_rollout()

    config = A2CConfig(env_id="CartPole-v1", num_envs=N, num_steps=T, total_timesteps=N * T)
    hp = HParams(lr=7e-4, gamma=GAMMA, gae_lambda=LAMBDA, ent_coef=0.01).as_arrays()
    policy = make_policy(config, make_env("CartPole-v1")[2])
    structure = jax.tree.structure(policy.init(jax.random.PRNGKey(0)))
    assert jax.tree.structure(params) == structure  # every SB3 weight has its place

    traj = Transition(
        obs=jnp.asarray(data["obs"][:T]), action=jnp.asarray(data["actions"], jnp.int32),
        reward=jnp.asarray(data["rewards"]), terminated=jnp.asarray(data["terminated"]),
        truncated=jnp.asarray(data["truncated"]), final_obs=jnp.asarray(data["final_obs"]),
        episode_return=jnp.zeros((T, N)), episode_length=jnp.zeros((T, N), jnp.int32),
    )  # fmt: skip
    batch, _ = make_batch(policy, params, traj, hp)
    grads, _ = jax.grad(a2c_loss, has_aux=True)(params, policy, batch, hp, normalize_advantage)
    tx = make_optimizer("rmsprop", hp, hp.lr)
    updates, _ = tx.update(grads, tx.init(params), params)
    new_params = jax.tree.map(lambda p, u: p + u, params, updates)

    sb3_adv, sb3_ret = sb3_one_update(model, data)
    np.testing.assert_allclose(np.asarray(batch.advantage).reshape(T, N), sb3_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(batch.target_return).reshape(T, N), sb3_ret, rtol=1e-5, atol=1e-5)
    after = sb3_params_to_flax(model)
    moved = 0
    for ours, theirs, before in zip(
        jax.tree.leaves(new_params), jax.tree.leaves(after), jax.tree.leaves(params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-6)
        moved += int(np.any(np.asarray(theirs) != np.asarray(before)))
    assert moved == len(jax.tree.leaves(params))  # the update changed every tensor, on both sides alike
