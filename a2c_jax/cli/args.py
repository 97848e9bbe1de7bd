"""The flags of every command: dataclasses that tyro turns into the CLI (every A2CConfig and HParams
field is a flag of its own), and the exit statuses."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from a2c_jax.config import (
    CONFIG_NAMES,
    HPARAM_NAMES,
    A2CConfig,
    HParams,
    PresetName,
)
from a2c_jax.config import preset as make_preset
from a2c_jax.rlhf.config import RLHFConfig

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130
EXIT_FAULT = 1


def attribute_docs(cls: type) -> dict[str, str]:
    """`name: text` entries of the Attributes section of a class docstring (continuations joined).

    An entry is a line at the section's own indentation (whatever it is) that starts with a field
    name and ": "; deeper lines continue it; the section ends at the first line less indented.
    """
    _, found, section = inspect.cleandoc(cls.__doc__ or "").partition("Attributes:")
    lines = [line for line in section.splitlines() if line.strip()] if found else []
    depth = lambda line: len(line) - len(line.lstrip())
    docs: dict[str, str] = {}
    name = None
    for line in lines:
        head, sep, text = line.strip().partition(": ")
        if depth(line) < depth(lines[0]):
            break
        if depth(line) == depth(lines[0]) and sep and head.isidentifier():
            name = head
            docs[name] = text
        elif name:
            docs[name] += " " + line.strip()
    return docs


def _preset_hint(name: str) -> str:
    """The help's default note: values come from the preset; the 'default' preset's CartPole value."""
    config, hparams = make_preset("default", "CartPole-v1")
    value = getattr(config, name) if name in CONFIG_NAMES else float(getattr(hparams, name))
    shown = (
        " ".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else value
    )
    return f"(default: the preset's; 'default' on CartPole-v1: {shown})"


def _optional_fields() -> list[tuple[str, Any, Any]]:
    """One optional flag per A2CConfig and HParams field (None = keep the preset's value)."""
    hints = typing.get_type_hints(A2CConfig)
    docs = {**attribute_docs(A2CConfig), **attribute_docs(HParams)}
    fields: list[tuple[str, Any, Any]] = []
    for name in CONFIG_NAMES + HPARAM_NAMES:
        kind = hints[name] if name in CONFIG_NAMES else float
        arg = tyro.conf.arg(help=docs.get(name, ""), help_behavior_hint=_preset_hint(name))
        annotated = Annotated[kind | None, arg]  # type: ignore[valid-type]
        fields.append((name, annotated, dataclasses.field(default=None)))
    return fields


@dataclasses.dataclass
class _ClusterOptions:
    """Devices and processes (shared by train, sweep and pbt)."""

    devices: str | None = None
    """'all' or a device count: train shards its envs, sweep and pbt their members, over them (on a CPU
    one device per core; default: train 1, sweep and pbt split their members over the cores)"""
    coordinator_address: str | None = None
    """multi-process run: host:port of process 0's coordinator (with --num-processes and --process-id)"""
    num_processes: int | None = None
    """multi-process run: how many processes take part"""
    process_id: int | None = None
    """multi-process run: this process's index, 0 .. num_processes - 1"""
    distributed: bool = False
    """multi-process run: detect the processes from the cluster's environment (SLURM, TPU pods)"""
    distributed_timeout: int = 60
    """seconds to wait for every process of a multi-process run to join"""


@dataclasses.dataclass
class _RunOptions(_ClusterOptions):
    """Options of the run itself (not of the algorithm)."""

    preset: PresetName | None = None
    """starting values: 'default' (fast), 'sb3' (SB3 A2C defaults) or 'zoo' (RL-Zoo tuned); default 'default'"""
    seed: int | None = None
    """PRNG seed (default 0)"""
    config: Path | None = None
    """JSON file of settings (flat, or a run's config.json); flags given here override it"""
    run_dir: Path | None = None
    """output directory (default runs/ENV-seedN-TIME)"""
    resume: Path | None = None
    """continue the run in this directory from its newest checkpoint"""
    eval_episodes: int | None = None
    """greedy episodes in the final evaluation (default 32)"""
    log_points: int | None = None
    """about how many records metrics.jsonl gets, one per compiled chunk (default 100)"""
    checkpoint_seconds: float | None = None
    """seconds between periodic checkpoints (default 60)"""
    log: str | None = None
    """experiment trackers that mirror metrics.jsonl, comma-separated: 'tensorboard' (RUN_DIR/tensorboard),
    'wandb' (offline in RUN_DIR/wandb unless WANDB_MODE says otherwise); each needs its extra"""
    quiet: bool = False
    """no progress bar"""
    compile_cache: bool = True
    """use JAX's persistent compilation cache (in the user cache directory)"""


TrainArgs = dataclasses.make_dataclass("TrainArgs", _optional_fields(), bases=(_RunOptions,))
TrainArgs.__doc__ = "Train an A2C agent; writes config.json, metrics.jsonl, checkpoints, plots, summary.json."


@dataclasses.dataclass
class EvalArgs:
    """Restore a run's checkpoint and evaluate it."""

    run_dir: tyro.conf.Positional[Path]
    """the run directory written by `a2c-jax train`"""
    episodes: int | None = None
    """number of episodes (default: the run's --eval-episodes)"""
    stochastic: bool = False
    """sample actions instead of taking the greedy (mode) action"""
    seed: int | None = None
    """PRNG seed of the evaluation episodes (default: the run's own final evaluation, so the greedy return
    equals summary.json's)"""
    gif: Path | None = None
    """also render one greedy episode to this GIF (environments gymnax can draw)"""
    compile_cache: bool = True
    """use JAX's persistent compilation cache"""


@dataclasses.dataclass
class _PopulationArgs(_ClusterOptions):
    """Options shared by `sweep` and `pbt`."""

    preset: PresetName | None = None
    """starting values for everything not swept (default 'default')"""
    config: Path | None = None
    """JSON file of base settings (e.g. a best.json); flags given here override it"""
    grid: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """a swept name and its values, e.g. --grid lr=1e-4,3e-4 (repeat for more names)"""
    ranges: Annotated[tyro.conf.UseAppendAction[tuple[str, ...]], tyro.conf.arg(name="range")] = ()
    """a sampling range for --random, e.g. --range lr=1e-5:1e-2:log"""
    random: int = 0
    """number of random settings drawn from the ranges"""
    seeds: int = 4
    """seeds per setting (seeds 0..N-1)"""
    sample_seed: int = 0
    """seed of the random settings (and of PBT's choices)"""
    out: Path | None = None
    """output directory (default sweeps/ENV-TIME)"""
    eval_episodes: int = 16
    """greedy evaluation episodes per member"""
    log: str = ""
    """experiment trackers, comma-separated: 'tensorboard' writes every member as a TensorBoard run under
    OUT/tensorboard; 'wandb' one W&B run (offline unless WANDB_MODE says otherwise) with a members table and
    the members' curves; each needs its extra"""
    quiet: bool = False
    """no progress bar"""
    compile_cache: bool = True
    """use JAX's persistent compilation cache"""


@dataclasses.dataclass
class _SweepOptions(_PopulationArgs):
    max_population: int | None = None
    """most members per compiled chunk (default: as many as fit in memory)"""
    objective: str = "iqm"
    """the statistic over seeds that ranks settings (and that a study maximises): 'iqm', 'mean' or
    'quantile:Q' (0 < Q < 1; quantile:0.1 prefers settings whose worst decile of seeds still learns)"""
    sampler: Literal["tpe", "cmaes", "gp", "random", "grid"] | None = None
    """Bayesian search with Optuna (extra 'tune'): each round asks --batch trials, trains them x --seeds as one
    population and tells each trial its --objective; --grid values are categorical choices, --range names ranges"""
    trials: int | None = None
    """with --sampler: trials of the study in all, counted across every worker that shares it"""
    batch: int | None = None
    """with --sampler: trials per round, trained together (default 8)"""
    storage: str | None = None
    """with --sampler: the study's storage, shareable by many workers: a database URL (sqlite:///study.db,
    postgresql://user@host/db, mysql://...) or journal:PATH (default: sqlite OUT/study.db)"""
    study_name: str | None = None
    """with --sampler: the study's name in --storage (default: OUT's name); workers join a study by its name"""
    resume: Path | None = None
    """continue the study of this sweep directory with its saved settings (--trials and --batch may change)"""
    heartbeat: int = 60
    """with --sampler and a database: seconds between a worker's heartbeats; a trial silent for twice that is
    failed and queued again"""


@dataclasses.dataclass
class _PBTOptions(_PopulationArgs):
    interval: int | None = None
    """updates between exploit/explore steps (default: a tenth of the run)"""
    fraction: float = 0.25
    """share of the population replaced (and copied from) at each step"""
    resume: Path | None = None
    """continue the stopped PBT run in this directory from its last generation (its saved settings)"""


# Every A2CConfig / HParams field is a flag of sweep and pbt too: the base every member starts from.
SweepArgs = dataclasses.make_dataclass("SweepArgs", _optional_fields(), bases=(_SweepOptions,))
SweepArgs.__doc__ = "Train seeds x settings (grid and/or random search) as one vmapped program per static config."
PBTArgs = dataclasses.make_dataclass("PBTArgs", _optional_fields(), bases=(_PBTOptions,))
PBTArgs.__doc__ = "Population-based training: exploit and explore every --interval updates, inside one program."


@dataclasses.dataclass(frozen=True)
class RLHFArgs(RLHFConfig):
    """Token-level A2C for language-model alignment: a reference LM, a reward model from noisy
    preferences, then A2C against the reward model with a KL penalty to the reference (all generated
    in code, no downloads). Writes config.json, metrics.jsonl, summary.json, samples.json, rlhf.png."""

    out: Path = Path("runs/rlhf")
    """output directory (refused when it holds a run of other settings)"""
    stage_dir: Path | None = None
    """where the reference and reward model are cached by their settings (default: OUT/../rlhf-stages)"""
    quiet: bool = False
    """no progress bars"""
    compile_cache: bool = True
    """use JAX's persistent compilation cache (in the user cache directory)"""
    log: str = ""
    """experiment trackers, comma-separated: 'tensorboard' (one run per beta under OUT/tensorboard),
    'wandb' (one offline run in OUT/wandb); the metrics against A2C updates, written when the run ends"""
    resume: Path | None = None
    """continue the interrupted run in this directory with its saved settings (from its newest
    checkpoint; only --quiet, --log, --stage-dir, --compile-cache, --export, --devices and --fsdp may be
    given with it)"""
    export: Path | None = None
    """with --model: write each trained policy here as a directory transformers loads (EXPORT/beta_B
    for several betas)"""
    devices: str = "1"
    """devices each A2C update is split over ('all' or a count; the batch must divide over them): the
    prompts data-parallel, the parameters replicated unless --fsdp shards them"""
    stop_tokens: Annotated[tyro.conf.UseAppendAction[tuple[str, ...]], tyro.conf.arg(name="stop-token")] = ()
    """with --model: a text the model's tokenizer makes one token of (e.g. a newline, $'\\n' in bash): a
    response also ends at it, as at EOS (repeat for more)"""
    fsdp: int = 1
    """shard every parameter (policy, reference, reward model, Adam moments) over this many of the
    --devices (fully sharded data parallel, for a model one device cannot hold); must divide --devices"""
    coordinator_address: str | None = None
    """multi-process run: host:port of process 0's coordinator (with --num-processes and --process-id;
    every process runs the whole chain, each A2C update split over the devices of all of them)"""
    num_processes: int | None = None
    """multi-process run: how many processes take part"""
    process_id: int | None = None
    """multi-process run: this process's index, 0 .. num_processes - 1"""
    distributed: bool = False
    """multi-process run: detect the processes from the cluster's environment (SLURM, TPU pods)"""
    distributed_timeout: int = 60
    """seconds to wait for every process of a multi-process run to join"""


@dataclasses.dataclass(frozen=True)
class RLHFSweepArgs(RLHFArgs):
    """The KL trade-off: one A2C policy per beta, trained as one vmapped program against the same
    reference and reward model; adds tradeoff.png (gold reward vs KL; proxy vs gold per beta)."""

    out: Path = Path("runs/rlhf-sweep")
    """output directory (refused when it holds a run of other settings)"""
    betas: str = "0,0.02,0.1,0.5"
    """comma-separated KL coefficients, one policy each (--beta is ignored)"""


def _error(text: str, status: int, prefix: str = "a2c-jax: error: ") -> int:
    print(prefix + " ".join(text.split()), file=sys.stderr)
    return status
