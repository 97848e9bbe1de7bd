"""`a2c-jax rlhf` and `a2c-jax rlhf-sweep` (and their `--resume OUT`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from a2c_jax.cli.args import (
    RLHFArgs,
    RLHFSweepArgs,
)
from a2c_jax.cli.settings import (
    _flag,
    enable_compile_cache,
)
from a2c_jax.config import (
    ConfigError,
)
from a2c_jax.rlhf.config import RLHFConfig


def parse_betas(text: str) -> tuple[float, ...]:
    """'0,0.02,0.1' -> (0.0, 0.02, 0.1); ConfigError naming --betas otherwise."""
    try:
        betas = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"betas={text!r} is invalid: must be comma-separated numbers >= 0") from None
    if not betas:
        raise ConfigError(f"betas={text!r} is invalid: must name at least one beta")
    return betas


def resumed_rlhf(args: RLHFArgs, given: RLHFConfig) -> tuple[RLHFConfig, tuple[float, ...], Path]:
    """`--resume OUT`: the settings saved in OUT/config.json; a setting flag given with it is refused
    (exit 2, naming it) unless it equals the saved value."""
    from a2c_jax.rlhf.run import read_record

    out = args.resume
    assert out is not None
    config, betas = read_record(out)
    default = RLHFArgs()
    refused = [f.name for f in dataclasses.fields(RLHFConfig) if getattr(given, f.name) != getattr(default, f.name)
               and getattr(given, f.name) != getattr(config, f.name)]  # fmt: skip
    if args.out != type(args)().out:
        refused.append("out")
    if isinstance(args, RLHFSweepArgs) and args.betas != RLHFSweepArgs().betas and parse_betas(args.betas) != betas:
        refused.append("betas")
    if refused:
        raise ConfigError(
            f"--resume continues a run with its saved settings: {', '.join(map(_flag, refused))} cannot be "
            "given with it (allowed: --quiet, --log, --stage-dir, --compile-cache, --export, --devices, --fsdp)"
        )
    return config, betas, out


def rlhf_command(args: RLHFArgs) -> int:
    """`a2c-jax rlhf` and `a2c-jax rlhf-sweep`: run the chain (or continue it), print the outcome per beta."""
    config = RLHFConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RLHFConfig)})
    betas = parse_betas(args.betas) if isinstance(args, RLHFSweepArgs) else None
    config.validate()
    if betas is not None and config.kl_target > 0 and 0.0 in betas:
        raise ConfigError(
            f"betas={','.join(map(str, betas))!r} is invalid with kl_target={config.kl_target}: the adaptive "
            "controller multiplies each beta, so a beta of 0 would stay 0; give betas > 0, or kl_target=0 for "
            "fixed betas"
        )
    if args.export is not None and not config.model:
        raise ConfigError(f"export={str(args.export)!r} needs --model (only an imported model is exported)")
    out = args.out
    if args.resume is not None:
        config, saved_betas, out = resumed_rlhf(args, config)
        betas = saved_betas if isinstance(args, RLHFSweepArgs) or len(saved_betas) > 1 else None
    from a2c_jax.runs.trackers import parse_trackers

    trackers = parse_trackers(args.log)
    from a2c_jax.runs.runner import check_output_dir

    check_output_dir(out, "out", create=False)
    stage_dir = args.stage_dir or out.parent / "rlhf-stages"
    check_output_dir(stage_dir, "stage_dir", create=False)
    if args.compile_cache:
        enable_compile_cache()
    from a2c_jax.rlhf.run import run_rlhf
    from a2c_jax.rlhf.sharding import rlhf_layout

    layout = rlhf_layout(args.devices, args.fsdp, config.batch)

    from a2c_jax.runs.distributed import barrier, is_primary

    say = print if not args.quiet and is_primary() else (lambda _: None)
    command = "rlhf-sweep" if isinstance(args, RLHFSweepArgs) else "rlhf"
    summary = run_rlhf(
        config, out, stage_dir, betas, args.quiet, say, resume=args.resume is not None, command=command,
        export=args.export, layout=layout,
    )  # fmt: skip
    if is_primary():  # process 0 reports a multi-process run
        report_rlhf(summary, config, out, trackers)
    barrier("a2c-jax-rlhf-end")  # the processes leave together (JAX's shutdown barrier has a time limit)
    return 0


def report_rlhf(summary: dict[str, Any], config: RLHFConfig, out: Path, trackers: tuple[str, ...]) -> None:
    """Print a finished run's outcome (reward model, each beta's change, exports) and log its metrics
    to the experiment trackers."""
    rm, digits_task = summary["reward_model_stage"], not config.model
    if digits_task:
        print(
            f"reward model: held-out pair accuracy {rm['held_out_label_accuracy']:.3f} against the noisy labels, "
            f"{rm['held_out_gold_accuracy']:.3f} against the gold ordering"
        )
    elif "pairs" in rm:
        held = (f", held-out accuracy {rm['held_out_label_accuracy']:.3f} on {rm['held_out_pairs']} pairs"
                if "held_out_pairs" in rm else " (too few pairs to hold any out)")  # fmt: skip
        print(f"reward model: trained on {rm['pairs']} preference pairs{held}; saved in {rm['saved']}")
    elif "reward" in rm:
        print(f"reward function: {rm['reward']}")
    else:
        print(f"reward model: {rm['reward_model']}")
    for member in summary["members"]:
        if member.get("diverged_at") is not None:
            print(f"beta {member['beta']:g}: diverged at update {member['diverged_at']} (no result)")
            continue
        ref, final = member["reference"], member["final"]
        gold = f"gold reward {ref['gold']:.3f} -> {final['gold']:.3f}, " if digits_task else ""
        print(
            f"beta {member['beta']:g}: {gold}score {ref['score']:.3f} -> {final['score']:.3f}, "
            f"KL {final['k1']:.2f} nats/sequence, length {final['length']:.1f}"
        )
    for path in summary.get("exported", []):
        print(f"exported the trained policy -> {path}")
    if trackers:
        from a2c_jax.runs.records import MetricsLog
        from a2c_jax.runs.trackers import log_rlhf

        log_rlhf(trackers, out, MetricsLog(out / "metrics.jsonl").read())
    print(f"wrote {out} in {summary['seconds']['total']:.0f} s")
