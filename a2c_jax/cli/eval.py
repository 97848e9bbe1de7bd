"""`a2c-jax eval RUN_DIR`."""

from __future__ import annotations

import functools
import importlib.util

from a2c_jax.cli.args import (
    EvalArgs,
)
from a2c_jax.cli.settings import (
    enable_compile_cache,
)
from a2c_jax.config import (
    ConfigError,
    check_int,
    check_seed,
)


def eval_command(args: EvalArgs) -> int:
    """`a2c-jax eval RUN_DIR`."""
    import jax
    import numpy as np

    from a2c_jax.core.evaluate import evaluate_jit, record_episode
    from a2c_jax.core.train import build_agent, init_state
    from a2c_jax.runs.checkpoint import restore_checkpoint
    from a2c_jax.runs.resources import check_fits
    from a2c_jax.runs.runner import check_output_dir, load_run_record, warn

    if args.compile_cache:
        enable_compile_cache()
    if args.episodes is not None:
        check_int("episodes", args.episodes)
    if args.seed is not None:
        check_seed("seed", args.seed)
    config, hparams, settings = load_run_record(args.run_dir)
    episodes = args.episodes if args.episodes is not None else settings.eval_episodes
    agent = build_agent(config)
    check_fits(agent, 1, episodes)
    if args.gif is not None:
        if args.gif.is_dir():
            raise ConfigError(f"gif={str(args.gif)!r} is a directory: give a file name like episode.gif")
        if importlib.util.find_spec("pygame") is None:
            raise ConfigError("gif needs pygame to draw the episode: pip install 'a2c-jax[render]'")
        check_output_dir(args.gif.parent, "gif")
    like = jax.eval_shape(functools.partial(init_state, agent), hparams.as_arrays(), jax.random.PRNGKey(settings.seed))
    state, meta, _ = restore_checkpoint(args.run_dir / "checkpoints", like, warn=warn)
    # by default the episodes of the run's own final evaluation (`evaluate_final`): the same return as summary.json
    own = args.seed is None
    if args.seed is None:
        key = jax.random.fold_in(jax.random.PRNGKey(settings.seed), 1)
    else:
        key = jax.random.PRNGKey(args.seed)
    result = evaluate_jit(agent, state.params, state.env_state.obs_rms, key, episodes, not args.stochastic)
    returns = np.asarray(result.returns, np.float64)
    mode = "stochastic" if args.stochastic else "greedy"
    which = " (the run's own evaluation episodes)" if own and args.episodes is None and not args.stochastic else ""
    print(
        f"{config.env_id} after {meta['env_steps']:,} steps: {mode} return "
        f"{returns.mean():.2f} +- {returns.std():.2f} over {episodes} episodes{which}"
    )
    if args.gif is not None:
        from a2c_jax.runs.plots import render_gif

        states, rewards = record_episode(agent, state.params, state.env_state.obs_rms, key)
        render_gif(config.env_id, states, rewards, args.gif)
        print(f"wrote {args.gif} ({len(states)} frames)")
    return 0
