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
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from a2c_jax.config import A2CConfig, HParams
from a2c_jax.core.losses import a2c_loss
from a2c_jax.core.networks import make_policy
from a2c_jax.core.rollout import Transition
from a2c_jax.core.train import make_batch, make_optimizer
from a2c_jax.envs import make_env

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


# --- several consecutive updates, across SB3's options ----------------------------------------

K = 3  # consecutive updates: optimizer state (RMSprop squares, Adam moments, schedule) carries over


class MLPFeatures(BaseFeaturesExtractor):
    """SB3's way to share a torso between actor and critic: a features extractor ([64, 64] tanh)
    with empty actor and critic MLPs behind it (share_features_extractor is SB3's default)."""

    def __init__(self, observation_space, features_dim: int = 64):
        super().__init__(observation_space, features_dim)
        n = observation_space.shape[0]
        width = features_dim
        layers = [torch.nn.Linear(n, width), torch.nn.Tanh(), torch.nn.Linear(width, width), torch.nn.Tanh()]
        self.net = torch.nn.Sequential(*layers)

    def forward(self, obs):
        return self.net(obs)


def sb3_params(model: A2C, shared: bool) -> dict:
    """sb3_params_to_flax for every layout: separate or shared torso, and a Gaussian's log_std."""
    p = model.policy
    if not shared:
        params = sb3_params_to_flax(model)
    else:
        dense = lambda layer: {
            "kernel": jnp.asarray(layer.weight.detach().numpy().T),
            "bias": jnp.asarray(layer.bias.detach().numpy()),
        }
        net = p.features_extractor.net
        params = {
            "params": {
                "pi_torso": {"Dense_0": dense(net[0]), "Dense_1": dense(net[2])},
                "pi_head": dense(p.action_net),
                "vf_head": dense(p.value_net),
            }
        }
    if hasattr(p, "log_std"):
        params["params"]["log_std"] = jnp.asarray(p.log_std.detach().numpy())
    return params


def rollout_data(seed: int, obs_dim: int, continuous: bool, squashed: bool = False) -> dict:
    """synthetic_rollout's shape for any obs size; continuous actions are drawn N(0, 3^2), so many
    lie outside Pendulum's [-2, 2] bounds (the env would clip them; the loss must not). Squashed
    actions are their tanh, two of them set to exactly +-1 (where the inverse must clamp)."""
    rng = np.random.default_rng(seed)
    data = synthetic_rollout(seed)
    obs = rng.normal(size=(T + 1, N, obs_dim)).astype(np.float32) * 0.5
    final_obs = obs[1:].copy()
    done = data["terminated"] | data["truncated"]
    final_obs[done] = rng.normal(size=(int(done.sum()), obs_dim)).astype(np.float32)
    data |= {"obs": obs, "final_obs": final_obs}
    if continuous:
        data["actions"] = (rng.normal(size=(T, N, 1)) * 3.0).astype(np.float32)
        assert np.any(np.abs(data["actions"]) > 2.0)
        if squashed:
            data["actions"] = np.tanh(data["actions"])
            data["actions"][0, :2, 0] = [1.0, -1.0]
    return data


def sb3_fill_and_train(model: A2C, data: dict, progress_remaining: float) -> None:
    """sb3_one_update for any action space, at a given progress (SB3 sets it after each rollout)."""
    policy, buf = model.policy, model.rollout_buffer
    buf.reset()
    episode_starts = np.zeros(N, np.float32)
    discrete = data["actions"].ndim == 2
    with torch.no_grad():
        for t in range(T):
            obs = torch.as_tensor(data["obs"][t])
            actions = torch.as_tensor(data["actions"][t])
            values, log_probs, _ = policy.evaluate_actions(obs, actions)
            rewards = data["rewards"][t].copy()
            for i in range(N):
                if data["truncated"][t, i]:
                    final = torch.as_tensor(data["final_obs"][t, i][None])
                    rewards[i] += GAMMA * policy.predict_values(final)[0].item()
            stored = data["actions"][t][:, None] if discrete else data["actions"][t]
            buf.add(data["obs"][t], stored, rewards, episode_starts, values.flatten(), log_probs)
            episode_starts = (data["terminated"][t] | data["truncated"][t]).astype(np.float32)
        last_values = policy.predict_values(torch.as_tensor(data["obs"][T]))
    buf.compute_returns_and_advantage(last_values=last_values, dones=episode_starts)
    model._current_progress_remaining = progress_remaining
    model.train()


def to_transition(data: dict, continuous: bool) -> Transition:
    actions = jnp.asarray(data["actions"], jnp.float32 if continuous else jnp.int32)
    return Transition(
        obs=jnp.asarray(data["obs"][:T]), action=actions, reward=jnp.asarray(data["rewards"]),
        terminated=jnp.asarray(data["terminated"]), truncated=jnp.asarray(data["truncated"]),
        final_obs=jnp.asarray(data["final_obs"]), episode_return=jnp.zeros((T, N)),
        episode_length=jnp.zeros((T, N), jnp.int32),
    )  # fmt: skip


OPTION_CASES = {
    "normalize_advantage": ("CartPole-v1", {"normalize_advantage": True}, {"normalize_advantage": True}),
    "adam": ("CartPole-v1", {"use_rms_prop": False}, {"optimizer": "adam"}),
    "linear_lr": ("CartPole-v1", {"learning_rate": lambda progress: 7e-4 * progress}, {"lr_schedule": "linear"}),
    "shared_torso": (
        "CartPole-v1",
        {"policy_kwargs": {"features_extractor_class": MLPFeatures, "net_arch": {"pi": [], "vf": []}}},
        {"shared_torso": True},
    ),
    "no_ortho_init": ("CartPole-v1", {"policy_kwargs": {"ortho_init": False}}, {"ortho_init": False}),
    "continuous_out_of_bounds": ("Pendulum-v1", {}, {}),
    "gsde": (
        "Pendulum-v1",
        {"use_sde": True, "policy_kwargs": {"log_std_init": -2.0, "ortho_init": False}},
        {"use_sde": True, "log_std_init": -2.0, "ortho_init": False},
    ),
    "gsde_expln_shared_std": (
        "Pendulum-v1",
        {"use_sde": True, "policy_kwargs": {"log_std_init": 0.5, "use_expln": True, "full_std": False}},
        {"use_sde": True, "log_std_init": 0.5, "use_expln": True, "full_std": False},
    ),
    "gsde_squash_output": (
        "Pendulum-v1",
        {"use_sde": True, "policy_kwargs": {"log_std_init": -1.0, "squash_output": True}},
        {"use_sde": True, "log_std_init": -1.0, "squash_output": True},
    ),
    "continuous_adam_normalized": (
        "Pendulum-v1",
        {"use_rms_prop": False, "normalize_advantage": True, "policy_kwargs": {"log_std_init": -0.5}},
        {"optimizer": "adam", "normalize_advantage": True, "log_std_init": -0.5},
    ),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_consecutive_updates_match_sb3(case):
    """K updates in a row on fresh rollouts; every parameter agrees with SB3 after each one."""
    from a2c_jax.core.train import learn

    env_id, sb3_kwargs, ours = OPTION_CASES[case]
    continuous = env_id == "Pendulum-v1"
    torch.manual_seed(0)
    model = A2C("MlpPolicy", make_vec_env(env_id, n_envs=N, seed=0), n_steps=T, gamma=GAMMA, gae_lambda=LAMBDA,
                ent_coef=0.01, seed=0, device="cpu", **sb3_kwargs)  # fmt: skip
    model.set_logger(configure(None, []))
    shared = ours.get("shared_torso", False)
    params = sb3_params(model, shared)

    config = A2CConfig(env_id=env_id, num_envs=N, num_steps=T, total_timesteps=(K + 1) * N * T, **ours)
    hp = HParams(lr=7e-4, gamma=GAMMA, gae_lambda=LAMBDA, ent_coef=0.01).as_arrays()
    policy = make_policy(config, make_env(env_id)[2])
    init = policy.init(jax.random.PRNGKey(0))
    assert jax.tree.structure(params) == jax.tree.structure(init)  # every SB3 weight has its place
    for ours_leaf, theirs in zip(jax.tree.leaves(init), jax.tree.leaves(params), strict=True):
        assert ours_leaf.shape == theirs.shape
    opt_state = make_optimizer(config.optimizer, hp, hp.lr).init(params)
    step = jax.jit(learn, static_argnums=(0, 1))

    for k in range(K):
        data = rollout_data(10 + k, int(np.prod(model.observation_space.shape)), continuous, config.squash_output)
        before = params
        params, opt_state, _, _, _ = step(config, policy, params, opt_state, to_transition(data, continuous), hp, k)
        sb3_fill_and_train(model, data, 1.0 - (k + 1) / (K + 1))
        after = sb3_params(model, shared)
        for ours_leaf, theirs, old in zip(
            jax.tree.leaves(params), jax.tree.leaves(after), jax.tree.leaves(before), strict=True
        ):
            np.testing.assert_allclose(np.asarray(ours_leaf), np.asarray(theirs), rtol=2e-5, atol=2e-6)
            assert np.any(np.asarray(theirs) != np.asarray(old)), f"update {k} left a tensor unchanged"


@pytest.mark.parametrize("full_std", [True, False])
@pytest.mark.parametrize("use_expln", [False, True])
def test_gsde_distribution_matches_sb3(full_std, use_expln):
    """log-prob, entropy, their gradients with respect to the learned log std, and the exploration
    noise with the same weight matrices, against SB3's StateDependentNoiseDistribution."""
    from stable_baselines3.common.distributions import StateDependentNoiseDistribution

    from a2c_jax.core.distributions import GSDEParams, gsde_entropy, gsde_explore, gsde_log_prob, gsde_std

    features, dim, batch = 5, 3, 7
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(batch, dim)).astype(np.float32)
    latent = rng.normal(size=(batch, features)).astype(np.float32)
    actions = (mean + rng.normal(size=(batch, dim))).astype(np.float32)
    log_std = rng.uniform(-1.5, 1.5, size=(features, dim if full_std else 1)).astype(np.float32)

    dist = StateDependentNoiseDistribution(dim, full_std=full_std, use_expln=use_expln)
    dist.latent_sde_dim = features
    log_std_t = torch.tensor(log_std, requires_grad=True)
    dist.proba_distribution(torch.tensor(mean), log_std_t, torch.tensor(latent))
    sb3_log_prob, sb3_entropy = dist.log_prob(torch.tensor(actions)), dist.entropy()
    (sb3_log_prob.sum() + sb3_entropy.sum()).backward()

    def ours(log_std):
        params = GSDEParams(jnp.asarray(mean), gsde_std(log_std, dim, use_expln), jnp.asarray(latent))
        return gsde_log_prob(params, jnp.asarray(actions)), gsde_entropy(params)

    log_prob, entropy = ours(jnp.asarray(log_std))
    np.testing.assert_allclose(np.asarray(log_prob), sb3_log_prob.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(entropy), sb3_entropy.detach().numpy(), rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda ls: sum(jnp.sum(x) for x in ours(ls)))(jnp.asarray(log_std))
    np.testing.assert_allclose(np.asarray(grad), log_std_t.grad.numpy(), rtol=1e-4, atol=1e-5)

    dist.sample_weights(log_std_t.detach(), batch_size=batch)  # one matrix per env, as reset_noise(n_envs)
    weights = dist.exploration_matrices.numpy()
    sb3_noise = dist.get_noise(torch.tensor(latent)).numpy()
    params = GSDEParams(jnp.asarray(mean), gsde_std(jnp.asarray(log_std), dim, use_expln), jnp.asarray(latent))
    np.testing.assert_allclose(np.asarray(gsde_explore(params, jnp.asarray(weights))) - mean, sb3_noise, atol=1e-5)


def test_normalisation_matches_sb3_vecnormalize():
    """Observation and reward normalisation against SB3's own VecNormalize, fed the raw stream of the
    same gymnax envs (scripted into a VecEnv): normalised observations, terminal observations and
    rewards at every step (each a function of the running statistics so far). Pendulum's 200-step
    time limit falls inside the 230 steps, so resets (returns zeroed, terminal observations) count."""
    from stable_baselines3.common.vec_env import VecEnv as SB3VecEnv
    from stable_baselines3.common.vec_env import VecNormalize
    from test_envs import run_fixed_actions

    from a2c_jax.envs import VecEnv

    steps, n, gamma = 230, 3, 0.95
    built = make_env("Pendulum-v1")
    action = jnp.full((n, 1), 0.7)
    raw_obs0, (raw_obs, raw_rew, term, trunc, raw_info) = run_fixed_actions(VecEnv(*built, n), steps, action, gamma)
    env = VecEnv(*built, n, normalize_observation=True, normalize_reward=True)
    obs0, (obs, rew, _, _, info) = run_fixed_actions(env, steps, action, gamma)
    dones = np.asarray(term) | np.asarray(trunc)
    assert dones.any()

    class Scripted(SB3VecEnv):
        """Replays the raw gymnax stream; VecNormalize only sees what step_wait returns."""

        def __init__(self):
            super().__init__(n, model.observation_space, model.action_space)
            self.t = 0

        def reset(self):
            return np.asarray(raw_obs0)

        def step_async(self, actions):
            pass

        def step_wait(self):
            t, self.t = self.t, self.t + 1
            infos = [{"terminal_observation": np.asarray(raw_info.final_obs[t, i])} for i in range(n)]
            return np.asarray(raw_obs[t]), np.asarray(raw_rew[t]), dones[t], infos

        def close(self):
            pass

        def get_attr(self, name, indices=None):
            return [None] * n

        def set_attr(self, name, value, indices=None):
            pass

        def env_method(self, name, *args, indices=None, **kwargs):
            return [None] * n

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * n

    model = A2C("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=1, seed=0), device="cpu")
    vn = VecNormalize(Scripted(), gamma=gamma)
    np.testing.assert_allclose(np.asarray(obs0), vn.reset(), rtol=1e-4, atol=1e-5)
    for t in range(steps):
        sb3_obs, sb3_rew, _, sb3_infos = vn.step(np.zeros((n, 1)))
        np.testing.assert_allclose(np.asarray(obs[t]), sb3_obs, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(rew[t]), sb3_rew, rtol=1e-4, atol=1e-5)
        for i in np.flatnonzero(dones[t]):
            np.testing.assert_allclose(
                np.asarray(info.final_obs[t, i]), sb3_infos[i]["terminal_observation"], atol=1e-4
            )


def test_squashed_gsde_matches_sb3():
    """squash_output=True: log-prob (with tanh's correction and the clamp at +-1) and its gradients,
    the greedy action, the sampled action from the same matrices, SB3's missing entropy, and the
    rescaling onto the Box bounds, against SB3's StateDependentNoiseDistribution and unscale_action."""
    from stable_baselines3.common.distributions import StateDependentNoiseDistribution

    from a2c_jax.core.distributions import SQUASHED_GSDE, GSDEParams, gsde_explore, gsde_std
    from a2c_jax.envs import env_action

    features, dim, batch = 5, 2, 9
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(batch, dim)).astype(np.float32)
    latent = rng.normal(size=(batch, features)).astype(np.float32)
    actions = np.tanh(mean + rng.normal(size=(batch, dim))).astype(np.float32)
    actions[0] = [1.0, -1.0]  # on the bounds: both sides clamp to 1 - float32 eps before atanh
    log_std = rng.uniform(-1.0, 0.5, size=(features, dim)).astype(np.float32)

    dist = StateDependentNoiseDistribution(dim, squash_output=True)
    dist.latent_sde_dim = features
    mean_t, log_std_t = torch.tensor(mean, requires_grad=True), torch.tensor(log_std, requires_grad=True)
    dist.proba_distribution(mean_t, log_std_t, torch.tensor(latent))
    sb3_log_prob = dist.log_prob(torch.tensor(actions))
    sb3_log_prob.sum().backward()
    assert dist.entropy() is None and SQUASHED_GSDE.entropy is None  # the loss uses -log_prob instead

    def log_prob(mean, log_std):
        return SQUASHED_GSDE.log_prob(GSDEParams(mean, gsde_std(log_std, dim, False), jnp.asarray(latent)), actions)

    ours = log_prob(jnp.asarray(mean), jnp.asarray(log_std))
    assert np.all(np.isfinite(np.asarray(ours)))
    np.testing.assert_allclose(np.asarray(ours), sb3_log_prob.detach().numpy(), rtol=1e-5, atol=1e-4)
    grads = jax.grad(lambda m, s: jnp.sum(log_prob(m, s)), argnums=(0, 1))(jnp.asarray(mean), jnp.asarray(log_std))
    np.testing.assert_allclose(np.asarray(grads[0]), mean_t.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(grads[1]), log_std_t.grad.numpy(), rtol=1e-4, atol=1e-4)

    params = GSDEParams(jnp.asarray(mean), gsde_std(jnp.asarray(log_std), dim, False), jnp.asarray(latent))
    np.testing.assert_allclose(np.asarray(SQUASHED_GSDE.mode(params)), dist.mode().detach().numpy(), atol=1e-6)
    dist.sample_weights(log_std_t.detach(), batch_size=batch)
    with torch.no_grad():
        sb3_sample = dist.sample().numpy()
    sampled = jnp.tanh(gsde_explore(params, jnp.asarray(dist.exploration_matrices.numpy())))
    np.testing.assert_allclose(np.asarray(sampled), sb3_sample, atol=1e-5)

    model = A2C("MlpPolicy", "Pendulum-v1", use_sde=True, policy_kwargs={"squash_output": True}, device="cpu")
    spec = make_env("Pendulum-v1")[2]
    squashed = np.array([[-1.0], [-0.25], [0.0], [0.6], [1.0]], np.float32)
    np.testing.assert_allclose(
        np.asarray(env_action(spec, jnp.asarray(squashed), squashed=True)),
        model.policy.unscale_action(squashed), atol=1e-6,
    )  # fmt: skip
