"""The `a2c-jax` CLI and the host loop: outputs, eval, checkpoint-resume equality, interruption,
divergence, and a clear one-line error (exit 2, nothing written) for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import CLI, SMALL_FLAGS
from gymnax.environments import environment, spaces
from gymnax.registration import register, registered_envs

import a2c_jax.runs.runner as runner
from a2c_jax.cli import attribute_docs, main
from a2c_jax.config import CONFIG_NAMES, HPARAM_NAMES, A2CConfig, HParams
from a2c_jax.core.train import build_agent
from a2c_jax.runs.checkpoint import restore_checkpoint

# --preset sb3 with these sizes is exactly the shared SMALL config, compiled once per session.
SMALL_ARGS = SMALL_FLAGS
RUN_ARGS = [*SMALL_ARGS, "--quiet", "--eval-episodes", "4", "--log-points", "12"]
SUMMARY_KEYS = {
    "env_id", "env_steps", "wall_seconds", "compile_seconds", "steps_per_second",
    "eval_return_mean", "eval_return_std", "eval_episodes",
}  # fmt: skip


def final_params(run_dir: Path):
    like = runner.abstract_state(build_agent(runner.load_run_record(run_dir)[0]))
    state, meta, step = restore_checkpoint(run_dir / "checkpoints", like)
    return state, meta, step


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *RUN_ARGS, "--run-dir", str(run_dir), "--seed", "3"]) == 0
    return run_dir


def test_train_writes_every_output(finished_run):
    for name in ("config.json", "metrics.jsonl", "learning_curve.png", "summary.json"):
        assert (finished_run / name).is_file(), name
    summary = json.loads((finished_run / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["env_steps"] == 384 and summary["eval_episodes"] == 4 and summary["seed"] == 3
    records = [json.loads(line) for line in (finished_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == list(range(1, 13))
    assert all(np.isfinite(r["loss"]) for r in records)
    assert (finished_run / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    _, meta, step = final_params(finished_run)
    assert step == 12 and meta["env_steps"] == 384
    saved = json.loads((finished_run / "config.json").read_text())
    assert saved["config"]["num_envs"] == 4 and saved["hparams"]["lr"] == pytest.approx(7e-4)


def test_eval_restores_and_reports(finished_run, capsys, tmp_path):
    gif = tmp_path / "episode.gif"
    assert main(["eval", str(finished_run), "--episodes", "3", "--gif", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1 after 384 steps: greedy return" in out and "over 3 episodes" in out
    assert gif.read_bytes()[:4] == b"GIF8"


def test_interrupt_then_resume_equals_uninterrupted_run(finished_run, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "interrupted"
    real = runner.summarize_chunk
    calls = {"n": 0}

    def interrupt_on_fifth(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(runner, "summarize_chunk", interrupt_on_fifth)
    assert main(["train", *RUN_ARGS, "--run-dir", str(run_dir), "--seed", "3"]) == 130
    assert "interrupted at update 4/12; checkpoint saved" in capsys.readouterr().err
    assert final_params(run_dir)[2] == 4
    assert not (run_dir / "summary.json").exists()
    monkeypatch.setattr(runner, "summarize_chunk", real)

    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    resumed, _, step = final_params(run_dir)
    reference, _, _ = final_params(finished_run)
    assert step == 12
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == list(range(1, 13))
    assert json.loads((run_dir / "summary.json").read_text())["resumed"] is True


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "diverged"
    # a learning rate of 1e38 overflows the parameters on the first update
    assert main(["train", *RUN_ARGS, "--run-dir", str(run_dir), "--lr", "1e38"]) == 1
    err = capsys.readouterr().err
    assert "non-finite loss or parameters at update 1 (env step 32)" in err and "last good state (update 0)" in err
    state, _, step = final_params(run_dir)
    assert step == 0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
    assert not (run_dir / "summary.json").exists()


class DictObsEnv(environment.Environment):
    """A tiny env whose observation space the policy cannot handle."""

    def observation_space(self, params):
        return spaces.Dict({"a": spaces.Box(0.0, 1.0, (2,))})

    def action_space(self, params):
        return spaces.Discrete(2)


if "DictObs-test" not in registered_envs:
    register("DictObs-test", DictObsEnv)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_INPUTS = {
    "unknown env id": (
        ["--env-id", "CartPol-v1"],
        "env_id='CartPol-v1' is unknown to gymnax; close matches: CartPole-v1",
    ),
    "zero envs": (["--num-envs", "0"], "num_envs=0 is invalid: must be a positive integer"),
    "negative steps": (["--num-steps", "-2"], "num_steps=-2 is invalid: must be a positive integer"),
    "zero lr": (["--lr", "0"], "lr=0.0 is invalid: must be > 0"),
    "gamma above 1": (["--gamma", "1.5"], "gamma=1.5 is invalid: must be in (0, 1]"),
    "gamma zero": (["--gamma", "0"], "gamma=0.0 is invalid: must be in (0, 1]"),
    "lambda below 0": (["--gae-lambda", "-0.1"], "gae_lambda=-0.1 is invalid: must be in [0, 1]"),
    "below one update": (["--total-timesteps", "10"], "total_timesteps=10 is invalid: must be >= num_envs * num_steps"),
    "unsupported space": (["--env-id", "DictObs-test"], "env_id='DictObs-test' is unsupported: its observation space"),
    "zoo without entry": (["--preset", "zoo", "--env-id", "Catch-bsuite"], "preset='zoo' has no tuned values"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    flags, message = BAD_INPUTS[case]
    run_dir = tmp_path / "run"
    assert main(["train", *flags, "--run-dir", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("a2c-jax: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not run_dir.exists()


def test_bad_files_and_run_dirs(tmp_path, capsys, finished_run):
    corrupt_run = tmp_path / "corrupt"
    corrupt_run.mkdir()
    write(corrupt_run / "config.json", "{not json")
    broken_ckpt = tmp_path / "broken"
    broken_ckpt.mkdir()
    (broken_ckpt / "config.json").write_text((finished_run / "config.json").read_text())
    (broken_ckpt / "checkpoints" / "12").mkdir(parents=True)
    write(broken_ckpt / "checkpoints" / "12" / "_CHECKPOINT_METADATA", "garbage")
    cases = [
        (["train", "--resume", str(tmp_path / "missing")], "does not exist"),
        (["train", "--resume", str(corrupt_run)], "config.json' is corrupt"),
        (["train", "--resume", str(broken_ckpt)], "broken/checkpoints"),
        (["eval", str(tmp_path / "missing")], "does not exist"),
        (["train", "--config", str(tmp_path / "nope.json")], "nope.json' does not exist"),
        (["train", "--config", str(write(tmp_path / "bad.json", "[1, 2"))], "is not a readable JSON file"),
        (
            ["train", "--config", str(write(tmp_path / "unk.json", '{"learning_rate": 1}'))],
            "unknown setting 'learning_rate'",
        ),
        (["train", "--run-dir", str(finished_run)], "already exists and is not empty"),
        (["eval", str(finished_run), "--episodes", "0"], "episodes=0 is invalid"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("a2c-jax: error: ") and err.count("\n") == 1, err
        assert message in err, (argv, err)


def test_config_file_then_flags_override(tmp_path):
    from a2c_jax.cli import TrainArgs, resolve_train_args

    cfg_file = write(tmp_path / "c.json", json.dumps({"env_id": "Acrobot-v1", "lr": 1e-3, "num_envs": 4, "seed": 9}))
    args = TrainArgs(config=cfg_file, num_envs=12)
    config, hparams, options = resolve_train_args(args)
    assert (config.env_id, config.num_envs, float(hparams.lr), options["seed"]) == ("Acrobot-v1", 12, 1e-3, 9)
    assert hparams.gamma == HParams().gamma


@pytest.mark.slow
def test_cli_end_to_end_in_subprocess(tmp_path):
    run_dir = tmp_path / "sub"
    proc = subprocess.run(
        [*CLI, "train", *RUN_ARGS, "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "greedy eval return" in proc.stdout
    assert (run_dir / "summary.json").is_file()
    proc = subprocess.run([*CLI, "eval", str(run_dir), "--episodes", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "greedy return" in proc.stdout, proc.stderr
    proc = subprocess.run(
        [*CLI, "train", "--gamma", "2", "--run-dir", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "a2c-jax: error: gamma=2.0 is invalid: must be in (0, 1]"
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


HELP_IMPORTS_CHECK = """
import sys
from a2c_jax.cli import main
for argv in (["--help"], ["train", "--help"], ["sweep", "--help"], ["rlhf", "--help"]):
    try:
        main(argv)
    except SystemExit as exit:
        assert exit.code == 0, (argv, exit.code)
heavy = [m for m in ("jax", "flax", "optax", "orbax", "gymnax", "matplotlib", "numpy") if m in sys.modules]
assert not heavy, f"printing help imported {heavy}"
print("help without jax")
"""


def test_help_imports_neither_jax_nor_numpy():
    """`a2c-jax --help` and every subcommand's help are built from jax-free settings modules."""
    out = subprocess.run([sys.executable, "-c", HELP_IMPORTS_CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "help without jax" in out.stdout


def test_attribute_docs_read_any_indentation():
    class Fields:
        """Doc.

        Attributes:
           alpha: first line
              continued
           beta_2: second
        Returns:
           nothing: not an attribute
        """

    assert attribute_docs(Fields) == {"alpha": "first line continued", "beta_2": "second"}
    assert set(attribute_docs(A2CConfig)) == set(CONFIG_NAMES)  # every flag gets its help text
    assert set(attribute_docs(HParams)) == set(HPARAM_NAMES)
