"""Environment layer: ids and spaces, running statistics, auto-reset, final observations,
time-limit truncation, and VecNormalize-style normalisation against a NumPy reference."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from a2c_jax.config import ConfigError
from a2c_jax.envs import VecEnv, make_env, rms_init, rms_update, spec_from_spaces


def test_unknown_env_id_names_close_matches():
    with pytest.raises(ConfigError, match=r"env_id='CartPol-v1'.*close matches: CartPole-v1"):
        make_env("CartPol-v1")


def test_unsupported_spaces_are_named():
    obs = spaces.Box(-1.0, 1.0, (3,))
    with pytest.raises(ConfigError, match="observation space"):
        spec_from_spaces("X", spaces.Dict({"a": obs}), spaces.Discrete(2), 10)
    with pytest.raises(ConfigError, match="action space"):
        spec_from_spaces("X", obs, spaces.Box(-np.inf, np.inf, (2,)), 10)
    with pytest.raises(ConfigError, match="action space"):
        spec_from_spaces("X", obs, spaces.Box(-1.0, 1.0, (2, 2)), 10)


@pytest.mark.parametrize(
    ("env_id", "kind", "dim", "obs_shape"),
    [
        ("CartPole-v1", "discrete", 2, (4,)),
        ("Pendulum-v1", "continuous", 1, (3,)),
        ("MountainCarContinuous-v0", "continuous", 1, (2,)),
        ("FrozenLake-misc", "discrete", 4, (16,)),  # discrete observations are one-hot encoded
    ],
)
def test_specs(env_id, kind, dim, obs_shape):
    _, _, spec = make_env(env_id)
    assert (spec.action_kind, spec.action_dim, spec.obs_shape) == (kind, dim, obs_shape)


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 2)).astype(np.float32) for n in (5, 17, 64)]
    rms = rms_init((2,))
    for b in batches:
        rms = rms_update(rms, jnp.asarray(b))
    data = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-4)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-3)
    assert float(rms.count) == pytest.approx(len(data) + 1e-4)


def run_fixed_actions(vec_env: VecEnv, steps: int, action: jax.Array, gamma: float = 0.99):
    """Step with a constant action; return the reset obs and stacked per-step outputs."""
    obs, state = vec_env.reset(jax.random.PRNGKey(0))

    def body(state, key):
        nxt, state, reward, term, trunc, info = vec_env.step(key, state, action, jnp.float32(gamma))
        return state, (nxt, reward, term, trunc, info)

    _, out = jax.lax.scan(body, state, jax.random.split(jax.random.PRNGKey(1), steps))
    return obs, out


def test_cartpole_auto_reset_and_final_observation():
    env = VecEnv(*make_env("CartPole-v1"), 3)
    _, (nxt, _, term, trunc, info) = run_fixed_actions(env, 60, jnp.zeros(3, jnp.int32))
    term, nxt, final = np.asarray(term), np.asarray(nxt), np.asarray(info.final_obs)
    assert term.any() and not np.asarray(trunc).any()
    # where nothing ended, the final observation is the next observation
    np.testing.assert_array_equal(final[~term], nxt[~term])
    # where the pole fell, the final observation is out of bounds and the next one is a fresh reset
    x, theta = final[term][:, 0], final[term][:, 2]
    assert np.all((np.abs(x) > 2.4) | (np.abs(theta) > 12 * 2 * np.pi / 360))
    assert np.all(np.abs(nxt[term]) <= 0.05)
    # episode statistics: length of each finished episode = steps since the previous end
    lengths = np.asarray(info.episode_length)
    for n in range(3):
        ends = np.flatnonzero(term[:, n])
        np.testing.assert_array_equal(lengths[ends, n], np.diff(np.concatenate([[-1], ends])))
        np.testing.assert_array_equal(np.asarray(info.episode_return)[ends, n], lengths[ends, n])
    assert np.all(lengths[~term] == 0)


def test_pendulum_truncates_at_time_limit():
    env = VecEnv(*make_env("Pendulum-v1"), 2)
    _, (nxt, reward, term, trunc, info) = run_fixed_actions(env, 201, jnp.zeros((2, 1)))
    trunc = np.asarray(trunc)
    assert not np.asarray(term).any()
    np.testing.assert_array_equal(np.flatnonzero(trunc[:, 0]), [199])
    assert np.asarray(info.episode_length)[199, 0] == 200
    np.testing.assert_allclose(np.asarray(info.episode_return)[199], np.asarray(reward)[:200].sum(0), rtol=1e-5)
    assert not np.allclose(np.asarray(info.final_obs)[199], np.asarray(nxt)[199])  # pre-reset vs reset


def test_actions_are_clipped_to_bounds():
    env = VecEnv(*make_env("Pendulum-v1"), 1)
    _, (_, big, *_rest) = run_fixed_actions(env, 5, jnp.full((1, 1), 50.0))
    _, (_, edge, *_rest) = run_fixed_actions(env, 5, jnp.full((1, 1), 2.0))
    np.testing.assert_allclose(big, edge)  # torque 50 acts exactly like the bound 2


def vecnormalize_reference(raw_obs0, raw_obs, raw_final, rewards, dones, gamma):
    """SB3 VecNormalize (training mode) written as a NumPy loop over the raw stream."""
    eps, clip = 1e-8, 10.0

    class RMS:
        def __init__(self, shape):
            self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

        def update(self, x):
            bm, bv, bc = x.mean(0), x.var(0), x.shape[0]
            delta, tot = bm - self.mean, self.count + bc
            m2 = self.var * self.count + bv * bc + delta**2 * self.count * bc / tot
            self.mean, self.var, self.count = self.mean + delta * bc / tot, m2 / tot, tot

    obs_rms, ret_rms = RMS(raw_obs0.shape[1:]), RMS(())
    norm = lambda o: np.clip((o - obs_rms.mean) / np.sqrt(obs_rms.var + eps), -clip, clip)
    obs_rms.update(raw_obs0)
    returns = np.zeros(raw_obs0.shape[0])
    out_obs, out_final, out_rew = [], [], []
    for t in range(len(rewards)):
        obs_rms.update(raw_obs[t])
        returns = returns * gamma + rewards[t]
        ret_rms.update(returns[:, None].reshape(-1))
        out_rew.append(np.clip(rewards[t] / np.sqrt(ret_rms.var + eps), -clip, clip))
        out_obs.append(norm(raw_obs[t]))
        out_final.append(norm(raw_final[t]))
        returns[dones[t]] = 0.0
    return np.array(out_obs), np.array(out_final), np.array(out_rew)


def test_normalisation_matches_vecnormalize_reference():
    built = make_env("CartPole-v1")
    action = jnp.zeros(4, jnp.int32)
    raw_obs0, (raw_obs, raw_rew, term, trunc, raw_info) = run_fixed_actions(VecEnv(*built, 4), 40, action, 0.9)
    env = VecEnv(*built, 4, normalize_observation=True, normalize_reward=True)
    _, (obs, rew, _, _, info) = run_fixed_actions(env, 40, action, 0.9)
    dones = np.asarray(term) | np.asarray(trunc)
    ref_obs, ref_final, ref_rew = vecnormalize_reference(
        np.asarray(raw_obs0, np.float64),
        np.asarray(raw_obs, np.float64),
        np.asarray(raw_info.final_obs, np.float64),
        np.asarray(raw_rew, np.float64),
        dones,
        0.9,
    )
    np.testing.assert_allclose(obs, ref_obs, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(info.final_obs, ref_final, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(rew, ref_rew, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(info.episode_return, raw_info.episode_return)  # stats stay raw


def test_builds_are_not_cached_and_agents_keep_their_env(toy_family):
    """make_env builds afresh on every call; re-registering a namespace changes what the next
    build_agent gets (spec, policy and env), while an Agent built before keeps the env it was built
    with: no cache anywhere can hand out a stale spec or policy."""
    from a2c_jax import envs
    from a2c_jax.config import preset
    from a2c_jax.core.train import build_agent
    from a2c_jax.envs import EnvSpec

    assert make_env(toy_family)[0] is not make_env(toy_family)[0]
    config, _ = preset("sb3", toy_family)
    before = build_agent(config)
    wider = EnvSpec("", (1,), "discrete", 3, max_episode_steps=9)
    envs.register_env_family("toy", lambda name: (Corridor(), {"limit": 9}, wider))
    after = build_agent(config)
    assert (after.spec.action_dim, after.spec.max_episode_steps, after.vec_env.env_params) == (3, 9, {"limit": 9})
    assert (before.spec.action_dim, before.vec_env.env_params) == (2, {"limit": 6})
    logits = lambda agent: agent.policy.act(agent.policy.init(jax.random.PRNGKey(0)), (), jnp.zeros((1, 1)))[1]
    assert jax.tree.leaves(logits(after))[0].shape[-1] == 3
    assert jax.tree.leaves(logits(before))[0].shape[-1] == 2


LIGHT_IMPORT_CHECK = """
import sys
from a2c_jax.envs import make_env
envs = {env_id: make_env(env_id)[0] for env_id in ("CartPole-v1", "Pendulum-v1", "Breakout-MinAtar")}
heavy = [m for m in ("seaborn", "matplotlib", "scipy", "gymnax", "gymnax.environments") if m in sys.modules]
assert not heavy, f"imported: {heavy}"
import gymnax  # afterwards the real package imports normally and shares the modules already loaded
for env_id, env in envs.items():
    assert type(gymnax.make(env_id)[0]) is type(env), env_id
assert gymnax.environments.CartPole is type(envs["CartPole-v1"])
assert make_env("Catch-bsuite")[2].action_dim == 3  # the other families go through gymnax.make
print("light import ok")
"""


def test_classic_control_and_minatar_skip_gymnax_heavy_imports():
    """Making a classic-control or MinAtar env imports neither gymnax's other families nor their
    matplotlib / scipy / seaborn, and a later `import gymnax` still works and shares the classes."""
    out = subprocess.run([sys.executable, "-c", LIGHT_IMPORT_CHECK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "light import ok" in out.stdout


# --- the environment protocol: a family registered under its own namespace ---------------------------


class Corridor:
    """A hand-made env in the protocol: walk right along 0..4 (action 1 right, 0 stay); reaching 4
    terminates with reward 1; a time limit of 6 steps truncates. Auto-resets to 0 like gymnax."""

    def reset(self, key, params):
        return jnp.zeros((1,)), (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def step(self, key, state, action, params):
        pos, t = state
        pos, t = pos + action, t + 1
        terminated = pos >= 4
        truncated = jnp.logical_and(t >= params["limit"], ~terminated)
        done = terminated | truncated
        final = pos.astype(jnp.float32)[None]
        next_state = (jnp.where(done, 0, pos), jnp.where(done, 0, t))
        obs = next_state[0].astype(jnp.float32)[None]
        return obs, next_state, terminated.astype(jnp.float32), terminated, truncated, {"final_observation": final}


def build_corridor(name):
    from a2c_jax.envs import EnvSpec

    if name != "corridor":
        raise ConfigError(f"toy has no {name!r}")
    return Corridor(), {"limit": 6}, EnvSpec("", (1,), "discrete", 2, max_episode_steps=6)


@pytest.fixture()
def toy_family():
    from a2c_jax import envs

    envs.register_env_family("toy", build_corridor)
    yield "toy:corridor"
    envs.unregister_env_family("toy")


def test_registered_family_maps_terminated_and_truncated(toy_family):
    built = make_env(toy_family)
    spec = built[2]
    assert spec.env_id == toy_family and spec.action_dim == 2
    vec = VecEnv(*built, 2)
    obs, state = vec.reset(jax.random.PRNGKey(0))
    # env 0 always moves right (reaches 4 at step 4: terminated); env 1 stays (time limit at step 6)
    flags = []
    for _ in range(6):
        obs, state, _reward, term, trunc, info = vec.step(jax.random.PRNGKey(1), state, jnp.array([1, 0]), 0.99)
        flags.append((term.tolist(), trunc.tolist(), info.final_obs[:, 0].tolist(), obs[:, 0].tolist()))
    assert flags[3] == ([True, False], [False, False], [4.0, 0.0], [0.0, 0.0])  # terminated, reset to 0
    assert flags[5] == ([False, False], [False, True], [2.0, 0.0], [2.0, 0.0])  # env 1 truncated at 0
    assert [f[0][0] for f in flags] == [False, False, False, True, False, False]


def test_registered_family_trains(toy_family):
    import dataclasses

    from a2c_jax.config import preset
    from a2c_jax.core.train import make_train

    config, hparams = preset("sb3", toy_family)
    config = dataclasses.replace(config, num_envs=4, num_steps=8, total_timesteps=4 * 8 * 4).validate()
    _state, metrics = jax.jit(make_train(config))(jax.random.PRNGKey(0), hparams)
    assert np.isfinite(np.asarray(metrics.loss)).all() and int(np.asarray(metrics.episodes).sum()) > 0


@pytest.mark.parametrize(
    ("env_id", "message"),
    [("nosuch:thing", "namespace 'nosuch' is unknown"), ("toy:hall", "toy has no 'hall'")],
)
def test_unknown_namespace_or_name_is_a_config_error(toy_family, env_id, message):
    with pytest.raises(ConfigError, match=message):
        make_env(env_id)


def test_gymnax_namespace_is_the_default():
    assert make_env("gymnax:CartPole-v1")[2].obs_shape == make_env("CartPole-v1")[2].obs_shape


def test_installed_family_is_found_through_its_entry_point(monkeypatch):
    """A package that declares `[project.entry-points."a2c_jax.env_families"] toy2 = "pkg:build"` is
    found without an import by the user (here the entry point names this module's builder)."""
    import importlib.metadata

    from a2c_jax import envs

    point = importlib.metadata.EntryPoint("toy2", "test_envs:build_corridor", envs.ENTRY_POINT_GROUP)
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group, name: [point] if (group, name) == (point.group, "toy2") else [],
    )
    try:
        assert make_env("toy2:corridor")[2].action_dim == 2
    finally:
        envs.unregister_env_family("toy2")


class CorridorNoReset:
    """The corridor without auto-reset, reporting only `done` (as Craftax's NoAutoReset envs)."""

    def reset(self, key, params):
        return Corridor().reset(key, params)

    def step(self, key, state, action, params):
        pos, t = state[0] + action, state[1] + 1
        done = (pos >= 4) | (t >= params["limit"])
        return pos.astype(jnp.float32)[None], (pos, t), (pos >= 4).astype(jnp.float32), done, {}


def test_auto_reset_adapter_equals_a_natively_resetting_env():
    """envs.AutoReset turns a `done`-only env into the protocol: same obs, flags and final observations
    as the corridor that resets itself, over episodes that terminate and that are truncated."""
    from a2c_jax.envs import AutoReset

    wrapped = AutoReset(CorridorNoReset(), lambda state, params: state[1] >= params["limit"])
    native, params = Corridor(), {"limit": 6}
    key = jax.random.PRNGKey(0)
    states = [native.reset(key, params)[1], wrapped.reset(key, params)[1]]
    flags = []
    for move in [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]:  # terminates, times out, terminates
        a = native.step(key, states[0], jnp.asarray(move), params)
        b = wrapped.step(key, states[1], jnp.asarray(move), params)
        for x, y in zip((*a[:5], a[5]["final_observation"]), (*b[:5], b[5]["final_observation"]), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        states = [a[1], b[1]]
        flags.append((bool(b[3]), bool(b[4])))
    assert flags.count((True, False)) == 2 and flags.count((False, True)) == 1


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_evaluation_through_vecenv_equals_stepping_the_env_by_hand(env_id):
    """`evaluate` runs its episodes through VecEnv with frozen statistics; a host loop that steps the
    gymnax env itself (same keys, the trained statistics applied by hand, actions clipped by hand) gets
    the same returns and lengths, with non-trivial observation statistics and a random network."""
    import dataclasses

    from a2c_jax.config import A2CConfig
    from a2c_jax.core.evaluate import evaluate_jit
    from a2c_jax.core.train import build_agent

    config = A2CConfig(env_id=env_id, num_envs=2, num_steps=4, total_timesteps=8, normalize_observation=True)
    agent = build_agent(config)
    env, env_params, spec = make_env(env_id)
    params = agent.policy.init(jax.random.PRNGKey(3))
    obs_rms = rms_init(spec.obs_shape)
    obs_rms = dataclasses.replace(obs_rms, mean=obs_rms.mean + 0.3, var=obs_rms.var * 2.0, count=jnp.float32(50.0))
    key, episodes = jax.random.PRNGKey(7), 3
    result = evaluate_jit(agent, params, obs_rms, key, episodes)

    reset_key, key = jax.random.split(key)
    raw, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, episodes), env_params)
    act = jax.jit(lambda o: agent.policy.dist.mode(agent.policy.act(params, (), o)[1]))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    returns, lengths, active = np.zeros(episodes), np.zeros(episodes, int), np.ones(episodes, bool)
    for _ in range(spec.max_episode_steps + 1):
        if not active.any():
            break
        key, _, step_key = jax.random.split(key, 3)
        obs = np.clip((np.asarray(raw, np.float32) - obs_rms.mean) / np.sqrt(obs_rms.var + 1e-8), -10, 10)
        action = act(jnp.asarray(obs, jnp.float32))
        if spec.action_kind == "continuous":
            action = jnp.clip(action, jnp.asarray(spec.action_low), jnp.asarray(spec.action_high))
        raw, state, reward, term, trunc, _ = step(jax.random.split(step_key, episodes), state, action, env_params)
        returns += np.where(active, np.asarray(reward), 0.0)
        lengths += active
        active &= ~(np.asarray(term) | np.asarray(trunc))
    np.testing.assert_allclose(np.asarray(result.returns), returns, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(result.lengths), lengths)


class TaggedCorridorNoReset(CorridorNoReset):
    """CorridorNoReset whose every fresh episode carries a random tag, to tell fresh episodes apart."""

    def reset(self, key, params):
        tag = jax.random.randint(key, (), 0, 2**30)
        return jnp.zeros((1,)), (jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), tag)

    def step(self, key, state, action, params):
        obs, (pos, t), reward, done, info = super().step(key, state[:2], action, params)
        return obs, (pos, t, state[2]), reward, done, info


def test_optimistic_auto_reset_shares_a_few_fresh_episodes_among_the_finished_envs():
    """8 envs, ratio 4: each step makes 2 fresh episodes (from the first two envs' reset keys); the
    envs that finish take them in order, the third finisher a copy of the first; the others keep
    their reached state; flags and final observations as AutoReset gives them."""
    from a2c_jax.envs import AutoReset, OptimisticAutoReset

    env, params, limit = TaggedCorridorNoReset(), {"limit": 6}, lambda s, p: s[1] >= p["limit"]
    optimistic, plain = OptimisticAutoReset(env, limit, reset_ratio=4), AutoReset(env, limit)
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    _, states = optimistic.reset(keys, params)
    # envs 1 and 6 walk to the goal (terminate), env 4 times out (truncated), the rest stay alive
    pos = jnp.array([0, 3, 0, 0, 0, 0, 3, 0])
    t = jnp.array([0, 0, 0, 0, 5, 0, 0, 0])
    states = (pos, t, states[2])
    actions = jnp.array([0, 1, 0, 0, 0, 0, 1, 0])
    obs, after, reward, terminated, truncated, info = optimistic.step(keys, states, actions, params)
    expected = jax.vmap(plain.step, in_axes=(0, 0, 0, None))(keys, states, actions, params)
    for got, want in [(reward, expected[2]), (terminated, expected[3]), (truncated, expected[4])]:
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(info["final_observation"]), np.asarray(expected[5]["final_observation"]))
    assert terminated.tolist() == [False, True, False, False, False, False, True, False]
    assert truncated.tolist() == [False, False, False, False, True, False, False, False]
    pool_keys = jax.vmap(jax.random.split)(keys)[:2, 1]
    fresh_tags = jax.vmap(env.reset, in_axes=(0, None))(pool_keys, params)[1][2]
    tags = after[2]
    assert tags[1] == fresh_tags[0] and tags[4] == fresh_tags[1] and tags[6] == fresh_tags[0]
    assert fresh_tags[0] != fresh_tags[1]
    alive = [0, 2, 3, 5, 7]
    np.testing.assert_array_equal(np.asarray(tags[jnp.array(alive)]), np.asarray(states[2][jnp.array(alive)]))
    assert after[0].tolist() == [0, 0, 0, 0, 0, 0, 0, 0] and after[1].tolist() == [1, 0, 1, 1, 0, 1, 0, 1]
    assert obs[:, 0].tolist() == [0.0] * 8


def test_vecenv_steps_a_batched_env_without_vmapping_it():
    """Through VecEnv (a registered family), the optimistic wrapper with one fresh episode per env gives
    the same observations, flags and episode statistics as AutoReset over two episodes."""
    from a2c_jax.envs import AutoReset, EnvSpec, OptimisticAutoReset, register_env_family

    limit = lambda s, p: s[1] >= p["limit"]
    spec = EnvSpec("", (1,), "discrete", 2, max_episode_steps=6)
    register_env_family("plainwalk", lambda name: (AutoReset(CorridorNoReset(), limit), {"limit": 6}, spec))
    register_env_family("optwalk", lambda name: (OptimisticAutoReset(CorridorNoReset(), limit, 1), {"limit": 6}, spec))
    try:
        runs = []
        for namespace in ("plainwalk", "optwalk"):
            vec = VecEnv(*make_env(f"{namespace}:corridor"), 3)
            _, state = vec.reset(jax.random.PRNGKey(0))
            out = []
            for i in range(8):
                obs, state, _, term, trunc, info = vec.step(
                    jax.random.PRNGKey(i), state, jnp.array([1, 0, i % 2]), 0.99
                )
                out.append([np.asarray(x) for x in (obs, term, trunc, info.final_obs, info.episode_length)])
            runs.append(out)
        for a, b in zip(*runs, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
        assert any(step[1].any() for step in runs[1]) and any(step[2].any() for step in runs[1])
    finally:
        from a2c_jax import envs

        for namespace in ("plainwalk", "optwalk"):
            envs.unregister_env_family(namespace)


@pytest.mark.parametrize("ratio", [0, -3, 2.5, True])
def test_optimistic_auto_reset_refuses_a_bad_reset_ratio(ratio):
    from a2c_jax.envs import OptimisticAutoReset

    with pytest.raises(ConfigError, match=f"reset_ratio={ratio!r} is invalid: must be a positive integer"):
        OptimisticAutoReset(CorridorNoReset(), lambda s, p: s[1] >= p["limit"], reset_ratio=ratio)


def test_every_vecenv_state_field_declares_its_group():
    """Sharding and PBT's exploit treat VecEnvState's fields by their declared group (per-env leaves vs
    shared statistics), never by name: every field declares one, and a state type with a field that
    does not is refused by name (so a new field can never silently go unsharded)."""
    import dataclasses

    from a2c_jax.envs.vec import PER_ENV, SHARED, VecEnvState, field_groups

    groups = field_groups(VecEnvState)
    assert groups == {"inner": PER_ENV, "obs_rms": SHARED, "ret_rms": SHARED, "discounted_return": PER_ENV,
                      "episode_return": PER_ENV, "episode_length": PER_ENV}  # fmt: skip

    @dataclasses.dataclass
    class Grown:
        inner: int = dataclasses.field(default=0, metadata={"group": PER_ENV})
        new_leaf: int = 0

    with pytest.raises(ValueError, match=r"Grown fields \['new_leaf'\] declare no group"):
        field_groups(Grown)
    built = make_env("CartPole-v1")
    _, state = VecEnv(*built, 3, normalize_observation=True).reset(jax.random.PRNGKey(0))
    marked = state.map_groups(lambda t: jax.tree.map(lambda _: "env", t), lambda t: jax.tree.map(lambda _: "all", t))
    assert jax.tree.leaves(marked.obs_rms) == ["all"] * 3 and set(jax.tree.leaves(marked.inner)) == {"env"}
