"""`a2c-jax eval RUN_DIR`."""

from __future__ import annotations

import functools

from a2c_jax.cli.args import (
    EvalArgs,
)
from a2c_jax.cli.settings import (
    enable_compile_cache,
)
from a2c_jax.config import (
    ConfigError,
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
    if args.episodes <= 0:
        raise ConfigError(f"episodes={args.episodes!r} is invalid: must be a positive integer")
    check_seed("seed", args.seed)
    config, hparams, settings = load_run_record(args.run_dir)
    agent = build_agent(config)
    check_fits(agent, 1, args.episodes)
    if args.gif is not None:
        if args.gif.is_dir():
            raise ConfigError(f"gif={str(args.gif)!r} is a directory: give a file name like episode.gif")
        check_output_dir(args.gif.parent, "gif")
    like = jax.eval_shape(functools.partial(init_state, agent), hparams.as_arrays(), jax.random.PRNGKey(settings.seed))
    state, meta, _ = restore_checkpoint(args.run_dir / "checkpoints", like, warn=warn)
    key = jax.random.PRNGKey(args.seed)
    result = evaluate_jit(agent, state.params, state.env_state.obs_rms, key, args.episodes, not args.stochastic)
    returns = np.asarray(result.returns, np.float64)
    mode = "stochastic" if args.stochastic else "greedy"
    print(
        f"{config.env_id} after {meta['env_steps']:,} steps: {mode} return "
        f"{returns.mean():.2f} +- {returns.std():.2f} over {args.episodes} episodes"
    )
    if args.gif is not None:
        from a2c_jax.runs.plots import render_gif

        states, rewards = record_episode(agent, state.params, state.env_state.obs_rms, key)
        render_gif(config.env_id, states, rewards, args.gif)
        print(f"wrote {args.gif} ({len(states)} frames)")
    return 0
