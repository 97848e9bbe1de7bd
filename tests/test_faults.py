"""Bad input and real faults, table-driven: every case asserts the exit status, a single line on
stderr that names the problem, no traceback, and the state of the run directory afterwards.

Faults are injected for real: SIGINT / SIGTERM / SIGKILL sent to a training subprocess at different
moments (during the first compile, right after a checkpoint, while checkpointing), a full disk (a
small tmpfs, or an injected ENOSPC where mounting is not allowed), corrupted and truncated files.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CLI, SMALL_FLAGS, wait_for

import a2c_jax.runs.checkpoint as checkpoint
from a2c_jax.cli import main
from a2c_jax.runs.checkpoint import checkpoint_steps

SMALL = SMALL_FLAGS
RUN = [*SMALL, "--quiet", "--eval-episodes", "4", "--log-points", "12"]
TIMEOUT = 120


def one_line(err: str) -> str:
    """The single stderr line of a failed command (warnings excluded); fails on tracebacks."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("a2c-jax: warning:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run of the shared small config (12 updates, a checkpoint after every one)."""
    run = tmp_path_factory.mktemp("faults") / "finished"
    assert main(["train", *RUN, "--run-dir", str(run), "--checkpoint-seconds", "0"]) == 0
    return run


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- bad input: exit 2, one line, nothing written ----------------------------------------------

LONG_NAME = "x" * 300


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# (argv with {tmp} for the test's directory, the message's key phrase); {new} must never be created.
TRAIN_BAD = {
    "gSDE on discrete actions": (["--use-sde", "True"], "use_sde=True is invalid for env_id='CartPole-v1'"),
    "sde_sample_freq 0": (
        ["--env-id", "Pendulum-v1", "--use-sde", "True", "--sde-sample-freq", "0"],
        "sde_sample_freq=0 is invalid",
    ),
    "sde_sample_freq -2": (["--env-id", "Pendulum-v1", "--sde-sample-freq", "-2"], "sde_sample_freq=-2 is invalid"),
    "unknown tracker": (["--log", "tensorboard,mlflow"], "log='tensorboard,mlflow' is invalid: must be a comma"),
    "unknown brax env": (["--env-id", "brax:cartpole"], "env_id='brax:cartpole' is unknown: known are brax:ant"),
    "unknown brax backend": (
        ["--env-id", "brax:hopper@bullet"],
        "env_id='brax:hopper@bullet' has backend 'bullet': allowed are generalized",
    ),
    "unknown env namespace": (["--env-id", "mujoco:ant"], "env_id namespace 'mujoco' is unknown: known are"),
    "squash_output without gSDE": (
        ["--env-id", "Pendulum-v1", "--squash-output", "True"],
        "squash_output=True is invalid: must be False unless use_sde=True",
    ),
    "seed 2**32 would wrap to 0": (["--seed", "4294967296"], "seed=4294967296 is invalid: must be an integer in [0,"),
    "seed 2**64-1": (["--seed", str(2**64 - 1)], "seed=18446744073709551615 is invalid"),
    "negative seed": (["--seed", "-1"], "seed=-1 is invalid"),
    "a billion envs": (
        ["--num-envs", "1000000000", "--total-timesteps", "100000000000"],
        "num_envs=1000000000 needs about",
    ),
    "int32 update counter": (["--total-timesteps", "10000000000000"], "(update counters are int32)"),
    "a billion eval episodes": (["--eval-episodes", "1000000000"], "eval_episodes=1000000000 needs about"),
    "zero eval episodes": (["--eval-episodes", "0"], "eval_episodes=0 is invalid"),
    "zero log points": (["--log-points", "0"], "log_points=0 is invalid"),
    "negative checkpoint seconds": (["--checkpoint-seconds", "-1"], "checkpoint_seconds=-1.0 is invalid"),
    "nan checkpoint seconds": (["--checkpoint-seconds", "nan"], "checkpoint_seconds=nan is invalid"),
    "zero hidden width": (["--hidden-sizes", "64", "0"], "hidden_sizes=(64, 0) is invalid"),
    "nan learning rate": (["--lr", "nan"], "lr=nan is invalid"),
    "infinite vf_coef": (["--vf-coef", "inf"], "vf_coef=inf is invalid"),
    "rms decay 1": (["--rms-decay", "1"], "rms_decay=1.0 is invalid"),
    "non-integer env count": (["--num-envs", "abc"], "Error parsing --num-envs: invalid literal for int()"),
    "unknown flag": (["--learning-rate", "1"], "Unrecognized options: --learning-rate"),
    "missing value": (["--lr"], "Missing value for argument '--lr'"),
    "bad choice": (["--network", "transformer"], "invalid choice 'transformer' for argument '--network'"),
    "bad preset": (["--preset", "best"], "invalid choice 'best' for argument '--preset'"),
    "run dir is a file": (["--run-dir", "{tmp}/afile"], "is a file: must be a directory"),
    "run dir under a file": (["--run-dir", "{tmp}/afile/x"], "cannot be written (Not a directory)"),
    "run dir name too long": (["--run-dir", "{tmp}/" + LONG_NAME], "(File name too long)"),
    "run dir on /proc": (["--run-dir", "/proc/a2c-jax-test"], "run_dir='/proc/a2c-jax-test' cannot be"),
    "config: lr not a number": (["--config", '{"lr": "abc"}'], "lr='abc' is invalid: must be a number"),
    "config: hidden_sizes an int": (["--config", '{"hidden_sizes": 64}'], "hidden_sizes=64 is invalid"),
    "config: bool given as list": (["--config", '{"shared_torso": [1]}'], "shared_torso=[1] is invalid"),
    "config: env id a number": (["--config", '{"env_id": 5}'], "env_id=5 is invalid: must be a string"),
    "config: 'false' as a string": (
        ["--config", '{"normalize_reward": "false"}'],
        "normalize_reward='false' is invalid: must be true or false",
    ),
    "config: fractional env count": (["--config", '{"num_envs": 2.5}'], "num_envs=2.5 is invalid: must be an integer"),
    "config: seed a string": (["--config", '{"seed": "x"}'], "seed='x' is invalid"),
    "config: unknown preset": (["--config", '{"preset": "best"}'], "preset='best' is invalid"),
    "config: unknown key": (["--config", '{"learning_rate": 1}'], "unknown setting 'learning_rate'"),
    "config: a list": (["--config", "[1, 2]"], "must hold a JSON object of settings, not list"),
    "config: torn JSON": (["--config", '{"lr": 0.1'], "is not a readable JSON file"),
    "config: a directory": (["--config", "{tmp}"], "is a directory, not a JSON file"),
    "config: missing": (["--config", "{tmp}/none.json"], "none.json' does not exist"),
    "config: run record with bad settings": (["--config", "RECORD:settings=oops"], "settings: must be a JSON object"),
    "config: run record with string lr": (["--config", "RECORD:hparams.lr=abc"], "lr='abc' is invalid"),
}


def materialise(argv: list[str], tmp: Path, finished: Path) -> list[str]:
    """Fill {tmp}; turn inline JSON after --config into a file; RECORD:a.b=v edits a copy of a run's config.json."""
    out = []
    for i, arg in enumerate(argv):
        arg = arg.replace("{tmp}", str(tmp))
        if i > 0 and argv[i - 1] == "--config" and arg.startswith(("{", "[")):
            arg = write(tmp / f"config{i}.json", arg)
        elif arg.startswith("RECORD:"):
            record = json.loads((finished / "config.json").read_text())
            path, _, value = arg[len("RECORD:") :].partition("=")
            *parents, leaf = path.split(".")
            node = record
            for p in parents:
                node = node[p]
            node[leaf] = value
            arg = write(tmp / "record.json", json.dumps(record))
        out.append(arg)
    return out


@pytest.mark.parametrize("case", TRAIN_BAD)
def test_train_bad_input(case, tmp_path, capsys, finished):
    (tmp_path / "afile").write_text("")
    argv, message = TRAIN_BAD[case]
    argv = materialise(argv, tmp_path, finished)
    if "--run-dir" not in argv:
        argv += ["--run-dir", str(tmp_path / "new")]
    assert main(["train", "--quiet", *argv]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("a2c-jax: error: ") and message in line, line
    assert not (tmp_path / "new").exists()
    assert not (tmp_path / LONG_NAME[:200]).exists()


EVAL_BAD = {
    "missing run": (["{tmp}/missing"], "does not exist"),
    "a file as run": (["{tmp}/afile"], "is a file, not a run directory"),
    "not a run dir": (["{tmp}"], "is not an a2c-jax run directory"),
    "zero episodes": (["{run}", "--episodes", "0"], "episodes=0 is invalid"),
    "seed 2**64": (["{run}", "--seed", str(2**64)], "seed=18446744073709551616 is invalid"),
    "a billion episodes": (["{run}", "--episodes", "1000000000"], "eval_episodes=1000000000 needs about"),
    "gif onto a directory": (["{run}", "--gif", "{tmp}"], "is a directory: give a file name"),
    "gif under a file": (["{run}", "--gif", "{tmp}/afile/x.gif"], "is a file: must be a directory"),
    "gif on /proc": (["{run}", "--gif", "/proc/a2c-jax-test.gif"], "gif='/proc' cannot be written"),
    "run without a checkpoint": (["{fresh}"], "no checkpoint found"),
    "corrupt config.json": (["{corrupt}"], "config.json' is corrupt"),
    "missing subcommand argument": ([], "missing required argument"),
}


@pytest.mark.parametrize("case", EVAL_BAD)
def test_eval_bad_input(case, tmp_path, capsys, finished):
    (tmp_path / "afile").write_text("")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(finished / "config.json", fresh / "config.json")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text('{"config": {"num_envs": "four"}, "hparams": {}, "settings": {}}')
    argv, message = EVAL_BAD[case]
    subs = {"{tmp}": str(tmp_path), "{run}": str(finished), "{fresh}": str(fresh), "{corrupt}": str(corrupt)}
    argv = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["eval", *argv]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("a2c-jax: error: ") and message in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stray temporary GIF or directory


RESUME_BAD = {
    "missing run": (["--resume", "{tmp}/missing"], "does not exist"),
    "a changed learning rate": (["--resume", "{run}", "--lr", "0.1"], "--lr cannot be given with it"),
    "a changed seed": (["--resume", "{run}", "--seed", "3"], "--seed cannot be given with it"),
    "a changed env": (["--resume", "{run}", "--env-id", "Acrobot-v1"], "--env-id cannot be given with it"),
    "a changed env count": (["--resume", "{run}", "--num-envs", "8"], "--num-envs cannot be given with it"),
    "a run dir too": (["--resume", "{run}", "--run-dir", "{tmp}/x"], "--run-dir cannot be given with it"),
    "a config file too": (["--resume", "{run}", "--config", "{run}/config.json"], "--config cannot be given"),
    "fewer steps than trained": (["--resume", "{run}", "--total-timesteps", "64"], "has already trained 384 steps"),
}


@pytest.mark.parametrize("case", RESUME_BAD)
def test_resume_bad_input(case, tmp_path, capsys, finished):
    run = copy_run(finished, tmp_path / "run")
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    argv, message = RESUME_BAD[case]
    argv = [a.replace("{run}", str(run)).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["train", "--quiet", *argv]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("a2c-jax: error: ") and message in line, line
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    assert not (tmp_path / "x").exists()


POPULATION_BAD = {
    "sweep out is a file": (["sweep", "--grid", "lr=1e-3,2e-3", "--out", "{tmp}/afile"], "is a file"),
    "sweep out under a file": (["sweep", "--grid", "lr=1e-3", "--out", "{tmp}/afile/o"], "is a file"),
    "sweep out not empty": (["sweep", "--grid", "lr=1e-3", "--out", "{tmp}/full"], "already exists and is not empty"),
    "pbt interval 0": (["pbt", "--grid", "lr=1e-3,2e-3", "--interval", "0"], "interval=0 is invalid"),
    "pbt interval -5": (["pbt", "--grid", "lr=1e-3,2e-3", "--interval", "-5"], "interval=-5 is invalid"),
    "sample seed 2**32": (["sweep", "--grid", "lr=1e-3", "--sample-seed", str(2**32)], "sample_seed=4294967296"),
    "ten million seeds": (["sweep", "--grid", "lr=1e-3", "--seeds", "10000000"], "members is too large"),
    "a trillion random settings": (
        ["sweep", "--range", "lr=1e-4:1e-3", "--random", "1000000000000"],
        "members is too large",
    ),
    "a huge grid": (
        [
            "sweep",
            *[a for n in ("vf_coef", "ent_coef", "gae_lambda", "gamma") for a in ("--grid", f"{n}=" + "0.5," * 40)],
        ],
        "members is too large",
    ),
    "eval episodes 0": (["sweep", "--grid", "lr=1e-3", "--eval-episodes", "0"], "eval_episodes=0 is invalid"),
    "bad grid value": (["sweep", "--grid", "shared_torso=maybe"], "shared_torso='maybe' is invalid"),
    "objective quantile 1": (["sweep", "--grid", "lr=1e-3", "--objective", "quantile:1"], "objective='quantile:1'"),
    "objective median": (["sweep", "--grid", "lr=1e-3", "--objective", "median"], "must be iqm, mean or quantile:Q"),
}


@pytest.mark.parametrize("case", POPULATION_BAD)
def test_population_bad_input(case, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("")
    argv, message = POPULATION_BAD[case]
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o")]
    assert main([*argv, *SMALL, "--quiet"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("a2c-jax: error: ") and message in line, line
    assert not (tmp_path / "o").exists()
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep"]


# --- resume rules and damaged files --------------------------------------------------------------


def test_resume_finished_run_says_so_and_changes_nothing(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    summary = (run / "summary.json").read_text()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "has already finished (12 updates); nothing to do" in capsys.readouterr().out
    assert (run / "summary.json").read_text() == summary


@pytest.mark.slow
def test_resume_diverged_run_reports_divergence_again(tmp_path, capsys):
    run = tmp_path / "diverged"
    assert main(["train", *RUN, "--run-dir", str(run), "--lr", "1e38"]) == 1
    first = one_line(capsys.readouterr().err)
    assert main(["train", "--resume", str(run), "--quiet"]) == 1
    again = one_line(capsys.readouterr().err)
    assert first == again and again.startswith("a2c-jax: training diverged: non-finite loss")
    assert checkpoint_steps(run / "checkpoints") == [0] and not (run / "summary.json").exists()


@pytest.mark.slow
def test_longer_total_on_resume_continues_a_constant_schedule(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    assert main(["train", "--resume", str(run), "--total-timesteps", "512", "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 512
    assert json.loads((run / "config.json").read_text())["config"]["total_timesteps"] == 512
    linear = tmp_path / "linear"
    assert main(["train", *RUN, "--run-dir", str(linear), "--lr-schedule", "linear"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(linear), "--total-timesteps", "512"]) == 2
    assert "cannot change on --resume with lr_schedule='linear'" in one_line(capsys.readouterr().err)


def test_torn_metrics_line_is_skipped_on_resume(finished, tmp_path):
    run = copy_run(finished, tmp_path / "run")
    shutil.rmtree(run / "checkpoints" / "12")
    (run / "summary.json").unlink()
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"update": 13, "env_steps": 41')  # a crash in the middle of a write
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == list(range(1, 13))


def test_corrupt_newest_checkpoint_falls_back_with_one_warning(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    for blob in (run / "checkpoints" / "12" / "state").rglob("d/*"):
        blob.write_bytes(blob.read_bytes()[:10])
    assert main(["eval", str(run), "--episodes", "2"]) == 0
    captured = capsys.readouterr()
    assert "after 352 steps" in captured.out  # checkpoint 11
    warning = captured.err.strip()
    assert warning.count("\n") == 0 and "skipped unreadable checkpoint 12" in warning and len(warning) < 300
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # retrains update 12 and finishes
    assert checkpoint_steps(run / "checkpoints")[0] == 12
    assert (run / "corrupt_checkpoints" / "12").is_dir()


def test_every_checkpoint_corrupt_is_one_line_exit_2(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path / "run")
    for step_dir in (run / "checkpoints").iterdir():
        (step_dir / "meta" / "metadata").write_text("garbage")
    assert main(["eval", str(run)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "no checkpoint in" in line and "checkpoint 12 (ValueError: file 'meta/metadata' is damaged)" in line


@pytest.mark.slow
def test_run_that_never_checkpointed_restarts_in_place(finished, tmp_path, capsys):
    run = tmp_path / "never"
    run.mkdir()
    shutil.copy(finished / "config.json", run / "config.json")
    (run / "metrics.jsonl").write_text('{"update": 1')
    assert main(["eval", str(run)]) == 2  # nothing to evaluate yet
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "never reached its first checkpoint: starting it again" in capsys.readouterr().err
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 384
    again = tmp_path / "never2"
    again.mkdir()
    shutil.copy(finished / "config.json", again / "config.json")
    assert main(["train", *RUN, "--run-dir", str(again)]) == 0  # a plain rerun into it works too


def test_files_follow_the_umask(finished):
    for name in ("config.json", "summary.json", "metrics.jsonl"):
        mode = stat.S_IMODE((finished / name).stat().st_mode)
        assert mode == 0o666 & ~current_umask(), (name, oct(mode))


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_diverged_sweep_members_are_flagged_and_never_best(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", *SMALL, "--grid", "lr=1e-3,1e38", "--seeds", "2", "--eval-episodes", "2"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "2 of 4 members diverged" in err and "Traceback" not in err
    ranking = (out / "ranking.csv").read_text().splitlines()
    header = ranking[0].split(",")
    last = dict(zip(header, ranking[-1].split(","), strict=True))
    assert float(last["lr"]) == 1e38 and last["diverged"] == "2"
    assert json.loads((out / "best.json").read_text())["lr"] == pytest.approx(1e-3)
    results = (out / "results.csv").read_text()
    assert results.count("True") == 2


@pytest.mark.slow
def test_sweep_where_every_setting_diverges_writes_no_best(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["sweep", *SMALL, "--grid", "lr=1e38", "--seeds", "1", "--eval-episodes", "2"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 1
    assert "every setting diverged: no best.json written" in capsys.readouterr().err
    assert (out / "results.csv").exists() and not (out / "best.json").exists()


# --- real faults: a full disk and signals at different moments ---------------------------------


def disk_bytes(directory: Path) -> int:
    """Bytes the files under `directory` take on a file system of 4 KiB blocks."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in directory.rglob("*") if p.is_file())


@pytest.fixture
def small_disk(tmp_path, finished):
    """A tmpfs with room for the run files and two and a half checkpoints (orbax writes a third before
    deleting the oldest, so the third save fills it), or None where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    size_kib = (int(2.5 * disk_bytes(finished / "checkpoints" / "12")) + 64 * 1024) // 1024
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_full_disk_while_checkpointing(small_disk, finished, tmp_path, monkeypatch, capsys):
    if small_disk is None:
        # no tmpfs here: the same fault injected into orbax's writer (ENOSPC after two checkpoints)
        real, saves = checkpoint.ocp.CheckpointManager.save, {"n": 0}

        def failing_save(self, *args, **kwargs):
            saves["n"] += 1
            if saves["n"] > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", failing_save)
        run = tmp_path / "run"
    else:
        run = small_disk / "run"
    argv = ["train", *RUN, "--checkpoint-seconds", "0", "--run-dir", str(run)]
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert "could not write checkpoint" in line and "No space left on device" in line
    assert "the newest intact checkpoint is" in line
    steps = checkpoint_steps(run / "checkpoints")
    assert steps and not list((run / "checkpoints").glob("*tmp*"))  # the partial write was removed
    assert main(["eval", str(run), "--episodes", "2"]) == 0  # the last good checkpoint reads back
    if small_disk is not None:
        subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    else:
        monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 384


def spawn(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)
        pytest.fail("the process did not stop")
    return proc.returncode, err


LONG = ["--preset", "sb3", "--num-envs", "4", "--num-steps", "8", "--total-timesteps", "64000", "--quiet"]
LONG += ["--eval-episodes", "2", "--log-points", "2000", "--checkpoint-seconds", "0"]


def has_checkpoint(run: Path) -> bool:
    ckpts = run / "checkpoints"
    return ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())


def saving(run: Path) -> bool:
    """True while orbax is writing a checkpoint (its temporary directory exists)."""
    ckpts = run / "checkpoints"
    return ckpts.is_dir() and any("tmp" in p.name for p in ckpts.iterdir())


SIGNAL_CASES = {
    # name: (signal, when, expected exit)
    "SIGINT during the first compile": (signal.SIGINT, "compile", 130),
    "SIGINT right after a checkpoint": (signal.SIGINT, "checkpoint", 130),
    "SIGTERM mid-run": (signal.SIGTERM, "checkpoint", 143),
    "SIGKILL while checkpointing": (signal.SIGKILL, "saving", -9),
}


@pytest.mark.parametrize("case", SIGNAL_CASES)
@pytest.mark.slow
def test_signals_leave_a_resumable_run(case, tmp_path):
    signum, moment, status = SIGNAL_CASES[case]
    run = tmp_path / "run"
    proc = spawn(["train", *LONG, "--run-dir", str(run)])
    if moment == "compile":
        wait_for(lambda: (run / "config.json").exists(), proc)  # written just before the first compile
    elif moment == "checkpoint":
        wait_for(lambda: has_checkpoint(run), proc)
    else:
        wait_for(lambda: saving(run), proc)
    proc.send_signal(signum)
    code, err = finish(proc)
    assert code == status, err
    if signum != signal.SIGKILL:
        assert "Traceback" not in err and "Segmentation" not in err
        assert "checkpoint saved: continue with `a2c-jax train --resume" in err
        assert has_checkpoint(run)
    # resumable (or restartable in place) whatever the moment; a shorter total keeps this quick
    record = json.loads((run / "config.json").read_text())
    done = max(checkpoint_steps(run / "checkpoints"), default=0)
    if record["config"]["lr_schedule"] == "constant":
        target = str(max(done + 2, 2) * 32)
        proc = spawn(["train", "--resume", str(run), "--total-timesteps", target, "--quiet"])
        code, err = finish(proc)
        assert code == 0, err
        assert json.loads((run / "summary.json").read_text())["env_steps"] == int(target)
        assert np.isfinite(json.loads((run / "summary.json").read_text())["eval_return_mean"])


# --- one writer per directory ---------------------------------------------------------------------

SWEEP = [*SMALL, "--quiet", "--seeds", "1", "--eval-episodes", "2", "--grid", "lr=1e-3,3e-3"]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", *RUN, "--run-dir", "{dir}"],
        ["sweep", *SWEEP, "--out", "{dir}"],
        ["pbt", *SWEEP, "--out", "{dir}"],
        ["rlhf", "--quiet", "--out", "{dir}"],
    ],
    ids=["train", "sweep", "pbt", "rlhf"],
)
def test_a_second_writer_is_refused_naming_the_holder(argv, tmp_path, capsys):
    """While another process writes a directory (here this test holds its lock), every command that
    would write it exits 2 with one line naming the holder, and writes nothing."""
    from a2c_jax.runs.lock import LOCK_NAME, DirectoryLock

    target = tmp_path / "busy"
    lock = DirectoryLock(target, "out").acquire()
    try:
        assert main([a.replace("{dir}", str(target)) for a in argv]) == 2
        line = one_line(capsys.readouterr().err)
        assert f"is in use by another a2c-jax process (pid {os.getpid()} on " in line, line
        assert sorted(p.name for p in target.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        lock.release()


def test_resume_of_a_run_being_written_is_refused_and_eval_still_reads(finished, capsys):
    from a2c_jax.runs.lock import DirectoryLock

    before = sorted(p.name for p in finished.iterdir())
    lock = DirectoryLock(finished, "run_dir").acquire()
    try:
        assert main(["train", "--resume", str(finished), "--quiet"]) == 2
        assert f"run_dir={str(finished)!r} is in use by another a2c-jax process (pid {os.getpid()}" in one_line(
            capsys.readouterr().err
        )
        assert main(["eval", str(finished), "--episodes", "2"]) == 0  # readers take no lock
    finally:
        lock.release()
    assert sorted(p.name for p in finished.iterdir()) == before


def test_a_killed_writers_lock_is_taken_over(tmp_path, capsys):
    """A process killed while it held the lock leaves its lock file; the kernel released the lock
    itself, so the next run takes the directory over (no stale lock ever blocks a run)."""
    run = tmp_path / "run"
    code = (
        "import sys, time; from pathlib import Path; from a2c_jax.runs.lock import DirectoryLock\n"
        f"DirectoryLock(Path({str(run)!r}), 'run_dir').acquire(); print('held', flush=True); time.sleep(100)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["train", *RUN, "--run-dir", str(run)]) == 2
        assert f"(pid {holder.pid} on " in one_line(capsys.readouterr().err)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert (run / ".a2c-jax.lock").exists()  # left behind by the killed process
    assert main(["train", *RUN, "--run-dir", str(run)]) == 0
    assert json.loads((run / "summary.json").read_text())["updates"] == 12
    assert not (run / ".a2c-jax.lock").exists()  # released at the end of the run


# --- a signal at any moment -------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [0.2, 0.6, 1.2])
@pytest.mark.parametrize("command", ["train", "resume", "eval"])
@pytest.mark.slow
def test_a_signal_in_the_first_seconds_is_one_line_and_130_or_143(command, delay, finished, tmp_path):
    """Ctrl-C (or SIGTERM) while the process is still importing JAX, starting XLA or compiling: exit
    130 / 143 with a last line that says interrupted, never a traceback, a crash or an exit 0."""
    sig = signal.SIGINT if delay != 0.6 else signal.SIGTERM
    if command == "train":
        argv = ["train", *LONG, "--run-dir", str(tmp_path / "run")]
    elif command == "resume":
        shutil.copytree(finished, tmp_path / "run")
        argv = ["train", "--resume", str(tmp_path / "run"), "--total-timesteps", "64000", "--quiet"]
    else:
        argv = ["eval", str(finished), "--episodes", "4"]
    proc = spawn(argv)
    time.sleep(delay)
    proc.send_signal(sig)
    code, err = finish(proc)
    lines = err.strip().splitlines()
    assert code == 128 + sig, err[-2000:]
    assert lines and lines[-1].startswith("a2c-jax: interrupted") and "Traceback" not in err, err[-2000:]


# --- messages (round two) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["trian", "--seed", "3", "--lr", "2"], "unknown command 'trian': did you mean 'train'? commands are train,"),
        (["train", "--config", "/dev/zero"], "config='/dev/zero' is invalid: not a regular file"),
        (["train", *SMALL, "--hidden-sizes", "100000", "100000"], "hidden_sizes=(100000, 100000) needs about"),
        (["train", *SMALL, "--coordinator-address", "127.0.0.1:99999", "--num-processes", "2", "--process-id", "0"],
         "coordinator_address='127.0.0.1:99999' is invalid: must be host:port"),
        (["train", *SMALL, "--coordinator-address", "bad host:12", "--num-processes", "2", "--process-id", "0"],
         "coordinator_address='bad host:12' is invalid"),
    ],
    ids=["typo", "dev-zero", "hidden-sizes", "port", "host"],
)  # fmt: skip
def test_round_two_bad_input_is_one_clear_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--run-dir", str(tmp_path / "r")] if argv[0] == "train" else argv) == 2
    line = one_line(capsys.readouterr().err)
    assert message in line and line.count("(applied to") == 0, line
    assert not (tmp_path / "r").exists()


def test_eval_reproduces_the_runs_own_evaluation_and_names_an_rlhf_directory(finished, tmp_path, capsys):
    summary = json.loads((finished / "summary.json").read_text())
    assert main(["eval", str(finished)]) == 0
    out = capsys.readouterr().out
    assert f"greedy return {summary['eval_return_mean']:.2f} +- {summary['eval_return_std']:.2f}" in out, out
    assert f"over {summary['eval_episodes']} episodes (the run's own evaluation episodes)" in out
    rlhf = tmp_path / "rlhf"
    rlhf.mkdir()
    (rlhf / "config.json").write_text(json.dumps({"seed": 0, "betas": [0.05]}))
    assert main(["eval", str(rlhf)]) == 2
    assert "is an RLHF run (`a2c-jax rlhf`), not a training run" in one_line(capsys.readouterr().err)


def test_eval_gif_without_pygame_fails_before_evaluating(finished, tmp_path, monkeypatch, capsys):
    import a2c_jax.cli.eval as eval_module

    real = eval_module.importlib.util.find_spec
    monkeypatch.setattr(eval_module.importlib.util, "find_spec", lambda n, *a: None if n == "pygame" else real(n, *a))
    assert main(["eval", str(finished), "--gif", str(tmp_path / "e.gif")]) == 2
    captured = capsys.readouterr()
    assert "gif needs pygame" in one_line(captured.err) and "return" not in captured.out


@pytest.mark.slow
def test_a_finished_run_piped_to_head_is_quiet_and_succeeds(tmp_path):
    """`a2c-jax train | head -c 10`: the reader goes early; the run still finishes (exit 0) and says
    nothing about a broken pipe."""
    cmd = f"{CLI[0]} train {' '.join(RUN)} --run-dir {tmp_path / 'r'} | head -c 10; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0 and "Broken pipe" not in proc.stderr, proc.stderr[-2000:]
    assert (tmp_path / "r" / "summary.json").is_file()


def test_traceback_variable_zero_means_off(monkeypatch, tmp_path, capsys):
    from a2c_jax import cli

    monkeypatch.setenv("A2C_JAX_TRACEBACK", "0")
    assert cli._fault(RuntimeError("boom")) == 1
    assert "internal error: RuntimeError: boom" in one_line(capsys.readouterr().err)


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGINT to a grid sweep between population chunks: exit 130, the finished chunks kept; `sweep
    --resume OUT` trains only the rest and ends with the results of a sweep never interrupted."""
    import csv

    sweep = [*SMALL[:-1], "16000", "--quiet", "--seeds", "2", "--eval-episodes", "4", "--max-population", "2",
             "--grid", "lr=1e-3,3e-3,1e-2,3e-2"]  # fmt: skip
    # every sweep here runs as the command does (a subprocess splits a population over both cores; float
    # order, and so an RL outcome, may differ from a run in this process)
    assert finish(spawn(["sweep", *sweep, "--out", str(tmp_path / "full")]))[0] == 0
    part = tmp_path / "part"
    proc = spawn(["sweep", *sweep, "--out", str(part)])
    wait_for(lambda: (part / "progress").is_dir() and any((part / "progress").glob("*.npz")), proc)
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 130 and f"continue with `a2c-jax sweep --resume {part}`" in err.strip().splitlines()[-1], err
    kept = sorted(p.name for p in (part / "progress").glob("*.npz"))
    assert 0 < len(kept) < 4, kept
    assert finish(spawn(["sweep", "--resume", str(part), "--quiet"]))[0] == 0
    rows = [
        [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader((d / "results.csv").open())]
        for d in (tmp_path / "full", part)
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 8
    assert not (part / "progress").exists()
    assert main(["sweep", "--resume", str(part), "--quiet"]) == 0  # finished: nothing to do
    assert main(["sweep", "--resume", str(part), "--seeds", "3"]) == 2  # a flag it would ignore is refused


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JAX_PLATFORMS": "cuda"}, "JAX_PLATFORMS='cuda' is invalid: this machine cannot start it"),
        ({"XLA_FLAGS": "--xla_bogus_flag=3"}, "XLA_FLAGS='--xla_bogus_flag=3' is invalid: Unknown flag in XLA_FLAGS"),
        ({"XLA_FLAGS": "garbage"}, "XLA_FLAGS='garbage' is invalid: Could not open file"),
        ({"WANDB_MODE": "bogus"}, "WANDB_MODE='bogus' is invalid: must be one of offline, online"),
        (
            {"WANDB_MODE": "online", "WANDB_API_KEY": "", "NETRC": "/nonexistent"},
            "WANDB_MODE='online' needs a W&B API key",
        ),
    ],
    ids=["cuda-missing", "xla-unknown-flag", "xla-garbage", "wandb-mode", "wandb-online-no-key"],
)  # fmt: skip
@pytest.mark.slow
def test_a_bad_environment_variable_is_one_line_naming_it(env, message, tmp_path):
    """Environment variables JAX, XLA or W&B would choke on (an internal assertion, a C++ fatal line and a
    flag dump, a validation traceback, a minute and a half of login retries) are exit 2, one line naming
    the variable, before anything is written."""
    proc = subprocess.run(
        [*CLI, "train", *RUN, "--run-dir", str(tmp_path / "r"), "--log", "wandb"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in one_line(proc.stderr), proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_checkpoint_that_no_longer_fits_its_config_is_one_line(finished, tmp_path):
    """`train --resume` of a run whose config.json was edited so the checkpoint no longer matches: exit 2
    with one error line and nothing else (the shapes are compared from orbax's metadata before a restore
    starts: a failed restore left threads printing 'Event loop is closed' tracebacks)."""
    run = tmp_path / "edited"
    shutil.copytree(finished, run)
    record = json.loads((run / "config.json").read_text())
    record["config"]["hidden_sizes"] = [32, 32]
    (run / "config.json").write_text(json.dumps(record))
    proc = subprocess.run([*CLI, "train", "--resume", str(run), "--total-timesteps", "768", "--quiet"],
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "none matches this run's configuration" in lines[0], proc.stderr[-3000:]
    assert "other shapes than this configuration's" in lines[0], lines
    assert not list((run / "checkpoints").glob("*tmp*"))


@pytest.mark.slow
def test_no_stray_lines_on_stderr(tmp_path, monkeypatch, capsys):
    """A compilation cache that cannot be written is one warning line (then no cache); W&B under
    --quiet prints nothing of its own."""
    from a2c_jax.cli.settings import enable_compile_cache

    monkeypatch.setenv("A2C_JAX_CACHE_DIR", "/dev/null/cache")
    enable_compile_cache()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the compilation cache '/dev/null/cache' cannot be written" in err[0], err
    monkeypatch.undo()  # the session's own cache again
    proc = subprocess.run([*CLI, "train", *RUN, "--run-dir", str(tmp_path / "w"), "--log", "wandb"],
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    assert any((tmp_path / "w" / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_a_run_directory_removed_mid_run_is_not_recreated(tmp_path):
    """`rm -rf RUN_DIR` while training: exit 1 naming what went, and the run does not go on (it was
    silently re-created without its config.json and finished with exit 0). A checkpoint being written at
    that moment may still land in RUN_DIR/checkpoints (orbax makes its parents)."""
    run = tmp_path / "run"
    proc = spawn(["train", *LONG, "--run-dir", str(run)])
    wait_for(lambda: has_checkpoint(run), proc)
    for _ in range(100):  # the run keeps writing into it while it goes: remove until it is gone
        shutil.rmtree(run, ignore_errors=True)
        if not run.exists():
            break
    code, err = finish(proc)
    assert code == 1, err[-2000:]
    line = [text for text in err.splitlines() if text.startswith("a2c-jax")][-1]  # orbax may add noise
    # whichever write meets the missing directory first reports it: the checkpoint check, the metrics
    # file or a checkpoint already being written
    assert any(m in line for m in ("lost its config.json while training", "metrics.jsonl", "could not write")), line
    assert not (run / "config.json").exists() and not (run / "summary.json").exists()  # the run did not go on


@pytest.mark.slow
def test_stdout_on_a_full_device_drops_output_and_the_run_finishes(tmp_path):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*CLI, "train", *RUN, "--run-dir", str(tmp_path / "r")], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "a2c-jax: warning: stdout cannot be written (No space left on device); its output is dropped"
    ]
    assert (tmp_path / "r" / "summary.json").is_file()


def test_metrics_that_cannot_be_appended_name_the_file(tmp_path):
    from a2c_jax.runs.records import MetricsLog

    log = MetricsLog(Path("/dev/full"))
    with pytest.raises(OSError) as caught:
        log.append({"update": 1})
    assert caught.value.filename == "/dev/full" and caught.value.strerror == "No space left on device"


@pytest.mark.slow
def test_an_interrupted_pbt_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGINT to `a2c-jax pbt` after a generation: exit 130 with a checkpoint; `pbt --resume OUT` ends with
    the results and schedule of the run never interrupted."""
    import csv

    pbt = [*SMALL[:-1], "6400", "--quiet", "--seeds", "2", "--eval-episodes", "4", "--grid", "lr=1e-3,3e-3",
           "--interval", "5"]  # fmt: skip
    assert finish(spawn(["pbt", *pbt, "--out", str(tmp_path / "full")]))[0] == 0
    part = tmp_path / "part"
    proc = spawn(["pbt", *pbt, "--out", str(part)])
    wait_for(lambda: has_checkpoint(part), proc)
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 130 and f"continue with `a2c-jax pbt --resume {part}`" in err.strip().splitlines()[-1], err
    assert finish(spawn(["pbt", "--resume", str(part), "--quiet"]))[0] == 0
    for name in ("results.csv", "schedule.csv"):
        rows = [[{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((d / name).open())]
                for d in (tmp_path / "full", part)]  # fmt: skip
        assert rows[0] == rows[1], name


def test_resume_on_a_read_only_file_system_is_bad_input_like_a_fresh_run(finished, tmp_path, capsys):
    """`train --resume` of a run on a read-only file system is exit 2 naming it, as a fresh run there is
    (it was exit 1); a read-only tmpfs is mounted for the test."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        shutil.copytree(finished, mount / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, capture_output=True)
        assert main(["train", "--resume", str(mount / "run"), "--total-timesteps", "768", "--quiet"]) == 2
        assert "cannot be written (Read-only file system)" in one_line(capsys.readouterr().err)
        assert main(["train", *RUN, "--run-dir", str(mount / "fresh")]) == 2
        assert "cannot be written (Read-only file system)" in one_line(capsys.readouterr().err)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_signal_whose_raise_is_dropped_in_a_finalizer_is_raised_by_check():
    """Python runs a signal handler at the next bytecode, which can be inside a `__del__` (or a weakref
    callback) where its exception is printed and dropped; `signals_raise`'s `check()` raises it again,
    so a study worker's SIGTERM is never lost (the study calls it after every round)."""
    import os
    import signal
    import threading

    from a2c_jax.runs.loop import Signalled, signals_raise

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set in the main thread")

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs here, inside __del__: its Signalled is dropped
                pass

    with signals_raise() as check:
        Finalized()  # collected at once; nothing reaches this frame
        with pytest.raises(Signalled) as raised:
            check()
    assert raised.value.signum == signal.SIGTERM
