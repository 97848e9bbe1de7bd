"""Sweeps and PBT: parsing and validation, members equal to training alone, chunking, statistics
against SciPy, the PBT exploit/explore steps, and the `sweep` / `pbt` commands."""

from __future__ import annotations

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL_FLAGS
from scipy import stats as scipy_stats

from a2c_jax.cli import SweepArgs, main, resolve_train_args
from a2c_jax.config import ConfigError, HParams
from a2c_jax.core import stats
from a2c_jax.core.evaluate import evaluate
from a2c_jax.core.train import build_agent, init_state, make_train
from a2c_jax.population import space, sweep
from a2c_jax.population.pbt import exploit, make_pbt, perturb, select_sources


@pytest.mark.parametrize(
    ("grid", "ranges", "random", "message"),
    [
        (["learning_rate=1e-3"], [], 0, "unknown grid name 'learning_rate'"),
        (["lr="], [], 0, "grid 'lr' is empty"),
        (["lr"], [], 0, "must look like name=v1,v2"),
        (["lr=abc"], [], 0, "lr='abc' is invalid: must be a number"),
        (["num_envs=4.5"], [], 0, "num_envs='4.5' is invalid: must be an integer"),
        ([], ["lr=1e-2:1e-3:log"], 4, "low must be < high"),
        ([], ["lr=0:1e-3:log"], 4, "a log range needs low > 0"),
        ([], ["num_envs=1:8"], 4, "unknown range name 'num_envs'"),
        ([], ["lr=1e-4:1e-3"], 0, "pass --random N"),
        ([], [], 3, "needs at least one --range"),
    ],
)
def test_bad_search_spaces(grid, ranges, random, message):
    with pytest.raises(ConfigError, match=message):
        space.expand_settings(space.parse_grid(grid), space.parse_ranges(ranges), random)


def test_values_outside_their_range_fail_before_compiling(small_config):
    settings = space.expand_settings(space.parse_grid(["gamma=0.9,1.5"]), {}, 0)
    with pytest.raises(ConfigError, match=r"gamma=1\.5 is invalid: must be in \(0, 1\]"):
        sweep.make_members(small_config, HParams(), settings, [0])
    with pytest.raises(ConfigError, match="seeds is empty"):
        sweep.make_members(small_config, HParams(), [{}], [])


def test_expand_grid_and_random_samples():
    grid = space.parse_grid(["lr=1e-3,3e-3", "num_steps=4,8", "normalize_reward=true"])
    ranges = space.parse_ranges(["ent_coef=1e-4:1e-1:log", "vf_coef=0.25:1"])
    settings = space.expand_settings(grid, ranges, 5, seed=1)
    assert len(settings) == 2 * 2 * 5
    assert {s["num_steps"] for s in settings} == {4, 8} and all(s["normalize_reward"] is True for s in settings)
    ent = np.array([s["ent_coef"] for s in settings])
    assert np.all((ent >= 1e-4) & (ent <= 1e-1))
    assert settings == space.expand_settings(grid, ranges, 5, seed=1)  # reproducible


def test_log_uniform_sampling_is_uniform_in_log_space():
    points = space.sample_settings({"lr": space.Range(1e-5, 1e-1, True)}, 4000, seed=0)
    logs = np.log10([p["lr"] for p in points])
    assert scipy_stats.kstest((logs + 5) / 4, "uniform").pvalue > 0.01


def test_iqm_and_bootstrap_against_scipy():
    rng = np.random.default_rng(0)
    for n in (4, 8, 10, 13):
        x = rng.normal(size=n)
        assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))
    x = rng.normal(10.0, 1.0, size=10)
    low, high = stats.bootstrap_ci(x)
    assert low < stats.iqm(x) < high and high - low < 3
    assert stats.bootstrap_ci(np.full(5, 500.0)) == (500.0, 500.0)


@pytest.fixture(scope="module")
def lr_members(small_config):
    settings = space.expand_settings(space.parse_grid(["lr=1e-3,3e-3"]), {}, 0)
    return settings, sweep.make_members(small_config, HParams(), settings, [0, 1])


def alone(train, agent, hparams, seed, episodes=4):
    key = jax.random.PRNGKey(seed)
    state, metrics = train(key, hparams)
    result = evaluate(agent, state.params, state.env_state.obs_rms, jax.random.fold_in(key, 1), episodes)
    return float(result.returns.mean()), np.asarray(metrics.episode_return), np.asarray(metrics.episodes)


@pytest.mark.slow
def test_each_member_equals_training_it_alone(lr_members):
    _, members = lr_members
    result = sweep.run_group(members, 4, None, lambda n: None)
    assert result.chunks == 1
    agent = build_agent(members[0].config)
    train = jax.jit(make_train(agent))
    for i, m in enumerate(members):
        final, ret, count = alone(train, agent, m.hparams, m.seed)
        assert result.final_return[i] == pytest.approx(final, rel=1e-5)
        np.testing.assert_allclose(np.nan_to_num(result.curve_return[i]), np.where(count > 0, ret, 0), rtol=1e-4)
    assert len({float(r) for r in result.final_return}) > 1


@pytest.mark.slow
def test_chunked_population_equals_one_program(lr_members):
    _, members = lr_members
    whole = sweep.run_group(members, 4, None, lambda n: None)
    seen = []
    chunked = sweep.run_group(members, 4, 3, seen.append)  # 4 members, at most 3 per chunk -> 2 x 2
    assert chunked.chunks == 2 and seen == [2, 4]
    np.testing.assert_allclose(chunked.final_return, whole.final_return)


@pytest.mark.slow
def test_static_settings_split_into_groups(small_config):
    settings = space.expand_settings(space.parse_grid(["num_steps=4,8"]), {}, 0)
    members = sweep.make_members(small_config, HParams(), settings, [0])
    result = sweep.run_sweep(members, settings, eval_episodes=4)
    assert result.groups == 2
    # same env steps per member, other batch shapes: 12 and 24 updates
    assert np.nanmax(result.curve_steps[0]) == np.nanmax(result.curve_steps[1]) == 384
    assert result.curves.shape == (2, 24)


def test_select_sources_replaces_the_worst_with_the_best():
    fitness = jnp.array([5.0, -1.0, 9.0, 3.0, 7.0, 0.0, 8.0, 1.0])
    source = np.asarray(select_sources(jax.random.PRNGKey(0), fitness, 0.25))
    assert set(source[[1, 5]]) <= {2, 6}  # the two worst copy from the two best
    keep = [0, 2, 3, 4, 6, 7]
    np.testing.assert_array_equal(source[keep], keep)


def test_perturb_only_replaced_members_within_range():
    hp = HParams(lr=jnp.full(4, 1e-3), gamma=jnp.full(4, 0.999))
    replaced = jnp.array([True, False, True, False])
    new = perturb(jax.random.PRNGKey(1), hp, ["lr", "gamma"], replaced)
    lr = np.asarray(new.lr)
    factors = lr[[0, 2]] / np.float32(1e-3)
    assert np.all(np.isclose(factors, 0.8, rtol=1e-5) | np.isclose(factors, 1.25, rtol=1e-5)), factors
    assert np.all(lr[[1, 3]] == np.float32(1e-3))
    assert np.all(np.asarray(new.gamma) <= 1.0)


def test_exploit_copies_weights_but_keeps_each_members_envs(small_config):
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(3))
    agent = build_agent(small_config)
    states = jax.vmap(lambda k: init_state(agent, HParams().as_arrays(), k))(keys)
    new = exploit(states, jnp.array([0, 0, 2]))
    for leaf_new, leaf_old in zip(jax.tree.leaves(new.params), jax.tree.leaves(states.params), strict=True):
        np.testing.assert_array_equal(leaf_new[1], leaf_old[0])
        np.testing.assert_array_equal(leaf_new[2], leaf_old[2])
    np.testing.assert_array_equal(new.obs, states.obs)
    np.testing.assert_array_equal(new.key, states.key)


def test_pbt_program(small_config):
    hp = jax.tree.map(lambda x: jnp.full((4,), x, jnp.float32), HParams().as_arrays())
    hp = hp._replace(lr=jnp.array([1e-4, 3e-4, 1e-3, 3e-3]))
    result = jax.jit(make_pbt(small_config, 4, ["lr"], 0.25, 4))(jnp.arange(4), hp, jax.random.PRNGKey(0))
    assert result.fitness.shape == (3, 4) and result.schedule.lr.shape == (3, 4)
    np.testing.assert_allclose(result.schedule.lr[0], [1e-4, 3e-4, 1e-3, 3e-3])
    source = np.asarray(result.source)
    np.testing.assert_array_equal(source[-1], np.arange(4))  # no exploit after the last generation
    for g in range(2):
        replaced = np.flatnonzero(source[g] != np.arange(4))
        assert len(replaced) == 1
        worst = int(np.argmin(np.asarray(result.fitness)[g]))
        assert replaced[0] == worst
        ratio = float(result.schedule.lr[g + 1, worst] / result.schedule.lr[g, source[g, worst]])
        assert ratio == pytest.approx(0.8, rel=1e-5) or ratio == pytest.approx(1.25, rel=1e-5)
    assert np.all(np.isfinite(np.asarray(result.final_return)))


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sweep_command_outputs(tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", *SMALL_FLAGS, "--grid", "lr=1e-3,3e-3", "--seeds", "2", "--eval-episodes", "4"]
    assert main([*argv, "--objective", "quantile:0.25", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "quantile:0.25 over 2 seeds" in printed and "best.json" in printed
    rows = read_csv(out / "results.csv")
    assert len(rows) == 4 and {"lr", "gamma", "seed", "final_return", "env_steps", "seconds"} <= set(rows[0])
    assert sorted(float(r["lr"]) for r in rows) == [1e-3, 1e-3, 3e-3, 3e-3]
    curves = np.load(out / "curves.npz")
    assert curves["returns"].shape == (4, 12) and curves["env_steps"][0, -1] == 384
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    best = json.loads((out / "best.json").read_text())
    ranking = read_csv(out / "ranking.csv")
    assert best["lr"] == pytest.approx(float(ranking[0]["lr"]))
    for row in ranking:  # the score is the objective's statistic of that setting's seeds in results.csv
        seeds = sorted(float(r["final_return"]) for r in rows if r["lr"] == row["lr"])
        assert float(row["score"]) == pytest.approx(seeds[0] + 0.25 * (seeds[1] - seeds[0]))
    assert [float(r["score"]) for r in ranking] == sorted((float(r["score"]) for r in ranking), reverse=True)
    config, hparams, _ = resolve_train_args(SweepArgs(config=out / "best.json"))
    assert (config.num_envs, float(hparams.lr)) == (4, best["lr"])


def test_sweep_and_pbt_take_every_train_flag():
    import tyro

    from a2c_jax.cli import PBTArgs

    argv = ["--env-id", "MemoryChain-bsuite", "--network", "gru", "--hidden-sizes", "16", "--ent-coef", "0.02"]
    for cls in (SweepArgs, PBTArgs):
        config, hparams, _ = resolve_train_args(tyro.cli(cls, args=argv))
        assert (config.env_id, config.network, config.hidden_sizes) == ("MemoryChain-bsuite", "gru", (16,))
        assert float(hparams.ent_coef) == 0.02


@pytest.mark.slow
def test_pbt_command_outputs(tmp_path):
    out = tmp_path / "pbt"
    argv = ["pbt", *SMALL_FLAGS, "--grid", "lr=1e-4,3e-4,1e-3,3e-3", "--seeds", "1", "--interval", "4"]
    assert main([*argv, "--eval-episodes", "4", "--out", str(out), "--quiet"]) == 0
    schedule = read_csv(out / "schedule.csv")
    assert len(schedule) == 3 * 4 and {"generation", "member", "lr", "fitness", "copied_from"} <= set(schedule[0])
    assert len(read_csv(out / "results.csv")) == 4
    assert (out / "pbt.png").is_file() and "lr" in json.loads((out / "best.json").read_text())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "--grid", "foo=1"], "unknown grid name 'foo'"),
        (["sweep", "--grid", "lr=0,1e-3"], "lr=0.0 is invalid: must be > 0"),
        (["sweep", "--range", "lr=1e-2:1e-3", "--random", "2"], "low must be < high"),
        (["sweep", "--seeds", "0"], "seeds=0 is invalid"),
        (["sweep", "--max-population", "0"], "max_population=0 is invalid"),
        (["sweep", "--grid", "lr=1e-3,2e-3", "--log", "mlflow"], "log='mlflow' is invalid"),
        (["pbt", "--seeds", "2"], "pbt needs at least one --grid or --range"),
        (["pbt", "--grid", "num_envs=4,8"], "pbt searches HParams only"),
        (["pbt", "--grid", "lr=1e-3,2e-3", "--fraction", "0.9"], "fraction=0.9 is invalid"),
    ],
)
def test_population_commands_reject_bad_input(argv, message, tmp_path, capsys):
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("a2c-jax: error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_one_results_table_ranks_every_kind_of_population():
    """results.rank/best (used by grid and random sweeps, studies and PBT): clean candidates by IQM, then
    those with a diverged seed whatever their IQM, ties by key; best is the first clean one; the
    statistics are the IQM over seeds (25% trimmed each side) and its bootstrap interval."""
    from a2c_jax.population.results import best, rank, seed_statistics

    stats = seed_statistics(np.array([1.0, 2.0, 3.0, 100.0]), np.array([False, False, True, False]))
    assert stats["iqm"] == pytest.approx(2.5) and stats["diverged"] == 1 and stats["seeds"] == 4
    assert stats["ci_low"] <= stats["iqm"] <= stats["ci_high"]
    assert stats["score"] == stats["iqm"]  # the default objective
    rows = [{"setting": 0, "score": 5.0, "diverged": 0}, {"setting": 1, "score": 9.0, "diverged": 1},
            {"setting": 2, "score": 7.0, "diverged": 0}, {"setting": 3, "score": 7.0, "diverged": 0}]  # fmt: skip
    ranked = rank(rows, "setting")
    assert [(r["rank"], r["setting"]) for r in ranked] == [(1, 2), (2, 3), (3, 0), (4, 1)]
    assert best(ranked)["setting"] == 2
    assert best(rank([{"setting": 0, "score": 1.0, "diverged": 2}], "setting")) is None


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ("iqm", (2.0 + 3.0 + 4.0 + 5.0) / 4),  # 8 seeds: the middle four after sorting
        ("mean", (-50.0 + 1 + 2 + 3 + 4 + 5 + 6 + 100) / 8),
        ("quantile:0.5", 3.5),  # the median of an even count: halfway between the 4th and 5th
        ("quantile:0.1", -50.0 + 0.7 * (1.0 - -50.0)),  # position 0.1 * 7 = 0.7 between the 1st and 2nd
    ],
)
def test_objectives_are_the_statistic_they_name(objective, expected):
    """--objective: each statistic over seeds against its textbook definition on hand-sorted returns
    (linear interpolation between order statistics for a quantile), its bootstrap interval around it,
    and a ranking that changes with it: a setting that fails one seed in eight wins on the IQM and loses
    on the worst decile."""
    from a2c_jax.population.results import rank, seed_statistics

    returns = np.array([4.0, 100.0, -50.0, 2.0, 6.0, 1.0, 5.0, 3.0])
    stats = seed_statistics(returns, np.zeros(8, bool), objective)
    assert stats["score"] == pytest.approx(expected)
    assert stats["ci_low"] <= stats["score"] <= stats["ci_high"]
    steady = np.full(8, 400.0)
    brittle = np.array([500.0] * 7 + [100.0])
    order = {}
    for name in ("iqm", "quantile:0.1"):
        rows = [{"setting": i, **seed_statistics(r, np.zeros(8, bool), name)} for i, r in enumerate((steady, brittle))]
        order[name] = [r["setting"] for r in rank(rows, "setting")]
    assert order == {"iqm": [1, 0], "quantile:0.1": [0, 1]}


@pytest.mark.parametrize("text", ["median", "quantile:0", "quantile:1", "quantile:x", "quantile:", "IQM"])
def test_an_unknown_objective_is_refused_naming_what_is_allowed(text):
    from a2c_jax.config import ConfigError
    from a2c_jax.population.results import check_objective

    with pytest.raises(ConfigError, match=r"objective=.* is invalid: must be iqm, mean or quantile:Q"):
        check_objective(text)
