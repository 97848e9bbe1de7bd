"""`a2c-jax train | eval`: a tyro CLI generated from A2CConfig and HParams.

Every A2CConfig and HParams field is a flag of its own (`--lr`, `--gamma`, `--num-envs`, ...).
Values resolve in this order: preset (per env) < `--config FILE` < flags given on the command line.
Bad input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Annotated, Any

import tyro

from a2c_jax.cli.args import (  # noqa: F401
    EXIT_BAD_INPUT,
    EXIT_DIVERGED,
    EXIT_FAULT,
    EXIT_INTERRUPTED,
    EvalArgs,
    PBTArgs,
    RLHFArgs,
    RLHFSweepArgs,
    SweepArgs,
    TrainArgs,
    _ClusterOptions,
    _error,
    _optional_fields,
    _PBTOptions,
    _PopulationArgs,
    _preset_hint,
    _RunOptions,
    _SweepOptions,
    attribute_docs,
)
from a2c_jax.cli.eval import eval_command
from a2c_jax.cli.pbt import pbt_command
from a2c_jax.cli.rlhf import rlhf_command
from a2c_jax.cli.settings import (  # noqa: F401
    RESUME_MAY_CHANGE,
    RUN_OPTIONS,
    _flag,
    _run_settings,
    cache_dir,
    default_run_dir,
    enable_compile_cache,
    read_settings_file,
    resolve_train_args,
)
from a2c_jax.cli.sweep import (  # noqa: F401
    DEFAULT_BATCH,
    STUDY_MAY_CHANGE,
    STUDY_OPTIONS,
    _population_setup,
    _print_table,
    study_command,
    sweep_command,
)
from a2c_jax.cli.train import resume_command, train_command  # noqa: F401
from a2c_jax.config import ConfigError


def parse_args(argv: list[str] | None) -> Any:
    """tyro's parse, with its boxed multi-line errors turned into the one-line form every other error has."""
    import contextlib
    import io

    train_cmd: Any = Annotated[TrainArgs, tyro.conf.subcommand("train", description=TrainArgs.__doc__)]
    eval_cmd: Any = Annotated[EvalArgs, tyro.conf.subcommand("eval", description=EvalArgs.__doc__)]
    sweep_cmd: Any = Annotated[SweepArgs, tyro.conf.subcommand("sweep", description=SweepArgs.__doc__)]
    pbt_cmd: Any = Annotated[PBTArgs, tyro.conf.subcommand("pbt", description=PBTArgs.__doc__)]
    rlhf_cmd: Any = Annotated[RLHFArgs, tyro.conf.subcommand("rlhf", description=RLHFArgs.__doc__)]
    rlhf_sweep_cmd: Any = Annotated[
        RLHFSweepArgs, tyro.conf.subcommand("rlhf-sweep", description=RLHFSweepArgs.__doc__)
    ]
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(
                train_cmd | eval_cmd | sweep_cmd | pbt_cmd | rlhf_cmd | rlhf_sweep_cmd,
                args=argv,
                prog="a2c-jax",
                description="Pure-functional A2C in JAX on gymnax environments, and token-level A2C for RLHF.",
            )
    except SystemExit as stop:
        if stop.code in (0, None):
            sys.stderr.write(captured.getvalue())
            raise
        raise ConfigError(_one_line_parse_error(captured.getvalue(), argv)) from None


COMMANDS = ("train", "eval", "sweep", "pbt", "rlhf", "rlhf-sweep")


def _one_line_parse_error(text: str, argv: list[str] | None) -> str:
    """The gist of a tyro error box on one line, plus where to find help."""
    raw = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(("╭", "╰"))]
    body = [line.strip("│|").strip() for line in raw]
    is_rule = [bool(line) and set(line) <= {"─", "-"} for line in body]
    if len(body) > 1 and is_rule[1] and not raw[0].startswith("│"):  # a plain-text box: title, rule, body
        body = body[2:]
    paragraph: list[str] = []
    for line in body:
        if not line or set(line) <= {"─"}:
            if paragraph:
                break
            continue
        paragraph.append(line)
    message = " ".join(paragraph) or "bad arguments"
    if message.startswith("Error parsing"):
        reasons = [line.split(">: ", 1)[1] for line in body if line.startswith("- <class") and "NoneType" not in line]
        if reasons:
            message = message.split(":", 1)[0] + ": " + "; ".join(reasons)
    message = re.sub(r"^Missing from [^:]*:", "missing required argument", message).replace("{None}|", "")
    message = message.replace("'None', ", "").replace(", 'None'", "")
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if a in COMMANDS), "")
    if not command and argv and not argv[0].startswith("-"):  # an unknown command: name it, not every argument
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown command {argv[0]!r}: {hint}commands are {', '.join(COMMANDS)} (see `a2c-jax --help`)"
    return f"{message} (see `a2c-jax {command + ' ' if command else ''}--help`)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `a2c-jax` command; returns the exit status.

    Exit status: 0 done (or already finished), 2 bad input (nothing written), 1 a fault (training
    diverged, disk full, out of memory; the last checkpoint stays intact), 130 / 143 interrupted by
    SIGINT / SIGTERM (resumable). Every error is one line on stderr.
    """
    try:
        args = parse_args(argv)
        from a2c_jax.runs.process import check_backend, check_xla_flags, configure_process

        check_xla_flags()  # before JAX starts: XLA ends the process on a flag it does not know
        configure_process()
        if isinstance(args, _ClusterOptions | RLHFArgs):
            join_processes(args)  # before JAX's backend starts
        check_backend()
        if isinstance(args, _ClusterOptions | RLHFArgs):
            from a2c_jax.runs.distributed import check_processes_agree

            # every process of a multi-process run must be started with the same flags (train compares its
            # resolved settings too, so differing --config files or presets are caught as well)
            check_processes_agree({k: v for k, v in dataclasses.asdict(args).items() if k != "process_id"})
        if isinstance(args, EvalArgs):
            return eval_command(args)
        if isinstance(args, SweepArgs):
            return sweep_command(args)
        if isinstance(args, PBTArgs):
            return pbt_command(args)
        if isinstance(args, RLHFArgs):
            return rlhf_command(args)
        return train_command(args)
    except ConfigError as err:
        return _error(str(err), EXIT_BAD_INPUT)
    except KeyboardInterrupt as err:  # a study's Signalled carries SIGTERM's number
        return _error("interrupted", 128 + int(getattr(err, "signum", 2)), prefix="a2c-jax: ")
    except Exception as err:
        return _fault(err)


def join_processes(args: _ClusterOptions | RLHFArgs) -> None:
    """Validate --devices and start `jax.distributed` when the flags ask for several processes."""
    from a2c_jax.runs.distributed import DistributedOptions, initialize, parse_devices

    if args.devices is not None:
        parse_devices(args.devices)
    options = DistributedOptions(
        args.coordinator_address, args.num_processes, args.process_id, args.distributed, args.distributed_timeout
    )
    initialize(options.validate())


def _fault(err: Exception) -> int:
    """One line for a failure that is not bad input; the traceback only with A2C_JAX_TRACEBACK=1."""
    from a2c_jax.runs.checkpoint import CheckpointWriteError, root_cause
    from a2c_jax.runs.distributed import DistributedError
    from a2c_jax.runs.loop import ChunkFailed
    from a2c_jax.runs.runner import RunDirectoryGone, TrainingDiverged, TrainingInterrupted

    if os.environ.get("A2C_JAX_TRACEBACK", "") not in ("", "0"):
        raise err
    if isinstance(err, TrainingInterrupted):
        return _error(str(err), 128 + int(err.signum), prefix="a2c-jax: ")
    if isinstance(err, TrainingDiverged):
        return _error(str(err), EXIT_DIVERGED, prefix="a2c-jax: training diverged: ")
    if isinstance(err, CheckpointWriteError | DistributedError | RunDirectoryGone | ChunkFailed):
        return _error(str(err), EXIT_FAULT)
    if isinstance(err, OSError):
        where = f": {err.filename!r}" if err.filename else ""
        return _error(f"{err.strerror or err}{where}", EXIT_FAULT)
    if type(err).__name__ in ("XlaRuntimeError", "JaxRuntimeError") or isinstance(err, MemoryError):
        return _error(f"the computation failed: {root_cause(err)}", EXIT_FAULT)
    return _error(
        f"internal error: {root_cause(err)} (rerun with A2C_JAX_TRACEBACK=1 for the traceback and please report it)",
        EXIT_FAULT,
    )


def one_device_per_core(argv: list[str], environ: MutableMapping[str, str] = os.environ) -> None:
    """Before JAX starts, for `sweep`, `pbt` and `train`/`rlhf --devices` in one process: ask XLA for one CPU
    device per core (so populations, and a `train` that asks for devices, can use every core).

    Appends `--xla_force_host_platform_device_count=CORES` to XLA_FLAGS unless it already sets a
    count, the command is another, a multi-process flag is given, or there is one core. Programs
    that ask for one device run on the first as before; accelerators are unaffected.
    """
    names = {a.split("=")[0] for a in argv}
    multi = {"--coordinator-address", "--num-processes", "--process-id", "--distributed"}
    asks = argv[0] in ("train", "rlhf", "rlhf-sweep") and "--devices" in names if argv else False
    wanted = bool(argv) and (argv[0] in ("sweep", "pbt") or asks)
    if wanted and not names & multi:
        cpu_device_per_core(environ)


def cpu_device_per_core(environ: MutableMapping[str, str] = os.environ) -> None:
    """Append `--xla_force_host_platform_device_count=CORES` to XLA_FLAGS (before JAX starts) unless
    it already sets a count or there is one core."""
    flags = environ.get("XLA_FLAGS", "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores > 1 and "host_platform_device_count" not in flags:
        environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cores}".strip()


class QuietPipe:
    """stdout that drops its output once it cannot be written: its reader has gone (`a2c-jax train |
    head -1`: no "Broken pipe" on stderr) or its device is full (`> /dev/full`: one warning). The command
    goes on, and its exit status is the work's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except OSError as err:
            self._gone(err)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            self._gone(err)

    def _gone(self, err: OSError) -> None:
        """Drop the rest of stdout; a reader that went away is normal, anything else (a full disk) is said
        once on stderr. The command goes on either way: its files are what matter."""
        if not isinstance(err, BrokenPipeError):
            print(f"a2c-jax: warning: stdout cannot be written ({err.strerror or err}); its output is dropped",
                  file=sys.stderr)  # fmt: skip
        self._stream = open(os.devnull, "w")  # noqa: SIM115 (kept open for the rest of the process)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def quiet_closed_loop_hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    """sys.excepthook without orbax's aftermath: when a checkpoint restore fails, its background
    threads keep scheduling work on the event loop orbax has already closed, and each prints a
    traceback of `RuntimeError: Event loop is closed` (dozens of them) after the command's own one-line
    error. Those are dropped; every other exception prints as usual."""
    if issubclass(exc_type, RuntimeError) and str(exc) == "Event loop is closed":
        return
    sys.__excepthook__(exc_type, exc, tb)


def run() -> None:
    """Console-script wrapper: `main()`, then a quick exit.

    Everything a command writes is complete and closed when `main` returns (files are written
    atomically, checkpoints synchronously), so after the atexit handlers have run (JAX's among them)
    the process leaves with `os._exit`: the interpreter's own teardown — destroying XLA's client,
    compiled programs and thread pools one object at a time — took about a second of every command
    on a 2-core CPU and did nothing a user needs.
    """
    import atexit

    one_device_per_core(sys.argv[1:])
    sys.stdout = QuietPipe(sys.stdout)  # type: ignore[assignment]
    sys.excepthook = quiet_closed_loop_hook
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
