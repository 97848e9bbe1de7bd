# ruff: noqa: E402  (optuna is imported after the skip that says the tune extra is missing)
"""Optuna studies (`a2c-jax sweep --sampler`): TPE against random on a synthetic objective through
the same round loop, trial values equal to training alone, several workers on one study (SQLite and,
when a server can be started, PostgreSQL), a killed worker's trials retried, interrupt and --resume,
and one-line errors for bad input."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna", reason="the tune extra (optuna) is not installed")
from optuna.trial import TrialState

from a2c_jax.cli import main
from a2c_jax.population.space import SearchSpace, parse_grid
from a2c_jax.population.study import make_sampler, optimize, quiet_optuna, ranking_rows

sys.path.insert(0, str(Path(__file__).parent))
from _study_worker import SPACE, objective, synthetic_evaluator
from conftest import SMALL_FLAGS, wait_for

WORKER = str(Path(__file__).parent / "_study_worker.py")
TIMEOUT = 240
quiet_optuna()
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def trials_to_reach(sampler: str, seed: int, threshold: float = -0.05, trials: int = 60, batch: int = 4) -> int:
    """How many trials (in rounds of `batch`) the sampler needs before one scores above `threshold`."""
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, SPACE, seed))
    optimize(study, SPACE, trials, batch, synthetic_evaluator())
    values = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
    hits = [i for i, v in enumerate(values) if v is not None and v > threshold]
    return hits[0] + 1 if hits else trials + 1


def test_tpe_finds_the_optimum_region_faster_than_random():
    """Objective -(log10 lr + 3)^2 - ((ent_coef - 0.02) / 0.02)^2 over lr in [1e-5, 1e-1] (log) and
    ent_coef in [0, 0.1]; the region above -0.05 is ~1% of the space. TPE in rounds of 4 (constant liar)
    against Optuna's random sampler, 8 seeds each, deterministic (seeded samplers)."""
    tpe = [trials_to_reach("tpe", seed) for seed in range(8)]
    rand = [trials_to_reach("random", seed) for seed in range(8)]
    assert np.median(tpe) < 0.6 * np.median(rand), (tpe, rand)
    assert max(tpe) <= 60, tpe  # TPE always gets there within the budget


@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "gp", "random"])
def test_every_sampler_runs_batched_rounds(sampler):
    study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, SPACE, 0))
    optimize(study, SPACE, 24, 4, synthetic_evaluator())
    assert len(study.trials) == 24 and study.best_value > -2.0  # the peak is 0; a random point scores ~ -8


def test_round_tells_values_curves_and_attributes():
    study = optuna.create_study(direction="maximize", sampler=make_sampler("random", SPACE, 0))
    assert optimize(study, SPACE, 6, 4, synthetic_evaluator()) == 6  # rounds of 4, then 2
    assert len(study.trials) == 6 and all(t.state == TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert t.value == pytest.approx(objective(t.params))
        assert t.intermediate_values == {100: pytest.approx(t.value - 1), 200: pytest.approx(t.value)}
        assert t.user_attrs["returns"] == [pytest.approx(t.value)] * 3 and t.user_attrs["env_steps"] == 200
    ranked = ranking_rows(study, SPACE)
    assert [r["iqm"] for r in ranked] == sorted((t.value for t in study.trials), reverse=True)


def test_diverged_trials_fail_but_count():
    from a2c_jax.population.study import Outcome

    def evaluate(settings):
        return [Outcome(np.array([1.0, np.nan]), np.array([False, True]), np.zeros(1), np.zeros(1), 8, 0.0)
                for _ in settings]  # fmt: skip

    study = optuna.create_study(direction="maximize")
    optimize(study, SPACE, 3, 2, evaluate)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    assert all(t.user_attrs["diverged"] == 1 for t in study.trials)


def test_grid_sampler_walks_the_grid_once():
    space = SearchSpace(parse_grid(["lr=1e-3,3e-3", "hidden_sizes=16,32x32"]), {})
    study = optuna.create_study(direction="maximize", sampler=make_sampler("grid", space, 0))
    seen = []

    def evaluate(settings):
        seen.extend(settings)
        return synthetic_evaluator()([{"lr": s["lr"], "ent_coef": 0.02} for s in settings])

    optimize(study, space, 4, 3, evaluate)
    assert sorted((s["lr"], s["hidden_sizes"]) for s in seen) == [
        (1e-3, (16,)), (1e-3, (32, 32)), (3e-3, (16,)), (3e-3, (32, 32))
    ]  # fmt: skip


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cli_study(tmp_path_factory):
    """A real study through the CLI: TPE, 4 trials in rounds of 2 x 2 seeds on the small CartPole config,
    maximising the mean over seeds."""
    out = tmp_path_factory.mktemp("study") / "s"
    argv = ["sweep", *SMALL_FLAGS, "--sampler", "tpe", "--trials", "4", "--batch", "2", "--seeds", "2",
            "--range", "lr=1e-4:3e-3:log", "--grid", "ent_coef=0,0.01", "--eval-episodes", "4",
            "--objective", "mean"]  # fmt: skip
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    return out


def test_cli_study_outputs(cli_study):
    out = cli_study
    for name in ("study.db", "search.json", "base.json", "ranking.csv", "results.csv", "curves.npz", "best.json",
                 "sweep.png", "history.png", "importances.png"):  # fmt: skip
        assert (out / name).is_file(), name
    ranking = read_csv(out / "ranking.csv")
    assert len(ranking) == 4 and len(read_csv(out / "results.csv")) == 8
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}")
    assert sorted(t.value for t in study.trials) == sorted(float(r["score"]) for r in ranking)
    members = read_csv(out / "results.csv")
    for t in study.trials:  # each trial's value is the mean of its seeds' returns (--objective mean)
        returns = [float(r["final_return"]) for r in members if r["trial"] == str(t.number)]
        assert len(returns) == 2 and t.value == pytest.approx(sum(returns) / 2)
    curves = np.load(out / "curves.npz")
    assert curves["returns"].shape[0] == 4 and np.nanmax(curves["env_steps"]) == 384
    best = json.loads((out / "best.json").read_text())
    assert best["lr"] == pytest.approx(float(ranking[0]["lr"])) and best["num_envs"] == 4


def test_study_trial_equals_training_alone(cli_study, tmp_path):
    """A trial's seed-1 return is what `a2c-jax train` with its values and --seed 1 gets. (The trial with
    the smallest learning rate: at large ones a member's float32 rounding inside the vmapped program can
    differ from a lone run's in the last bits, and a few chaotic updates amplify that into another
    greedy episode.)"""
    rows = [r for r in read_csv(cli_study / "results.csv") if r["seed"] == "1"]
    member = min(rows, key=lambda r: float(r["lr"]))
    run = tmp_path / "alone"
    argv = ["train", *SMALL_FLAGS, "--lr", member["lr"], "--ent-coef", member["ent_coef"], "--seed", "1"]
    assert main([*argv, "--eval-episodes", "4", "--run-dir", str(run), "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_return_mean"] == pytest.approx(float(member["final_return"]), rel=1e-5)


def test_resume_extends_the_study(cli_study, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(cli_study, out)  # a moved directory keeps its study: the default storage is OUT/study.db
    assert main(["sweep", "--resume", str(out), "--trials", "6", "--quiet"]) == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}")
    assert sorted(t.number for t in study.trials if t.state == TrialState.COMPLETE) == list(range(6))
    assert len(read_csv(out / "ranking.csv")) == 6


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "5"], "--seeds cannot be given with another value (the study's: seeds=2"),
        (["--eval-episodes", "7"], "--eval-episodes cannot be given with another value"),
        (["--sample-seed", "3"], "--sample-seed cannot be given with another value"),
        (["--log", "tensorboard"], "--log cannot be given with another value"),
        (["--heartbeat", "5"], "--heartbeat cannot be given with another value"),
        (
            ["--objective", "quantile:0.1"],
            "--objective cannot be given with another value (the study's: objective='mean'",
        ),
    ],
)
def test_resume_refuses_flags_it_would_ignore(flags, message, cli_study, capsys):
    """A flag --resume would otherwise ignore silently (the study's saved value wins) is refused, and
    given with the study's own value it is accepted."""
    assert main(["sweep", "--resume", str(cli_study), *flags, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_resume_of_a_missing_study_is_refused_and_nothing_starts_over(cli_study, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(cli_study, out)
    (out / "study.db").unlink()
    before = sorted(p.name for p in out.iterdir())
    assert main(["sweep", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "study not found" in err and "nothing to resume" in err, err
    assert sorted(p.name for p in out.iterdir()) == before  # nothing overwritten


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a journal\n", "line 1 is not an Optuna journal entry"),
        (b'{"op_code": 0, "worker_id": "w"}\n{"op_code": 4, "work', "its last line is cut short"),
    ],
    ids=["not-a-journal", "torn-last-line"],
)
def test_a_damaged_journal_is_refused_before_anything_appends(content, message, tmp_path, capsys):
    journal = tmp_path / "study.log"
    journal.write_bytes(content)
    argv = ["sweep", *SMALL_FLAGS, "--sampler", "random", "--trials", "2", "--range", "lr=1e-4:1e-2:log"]
    assert main([*argv, "--storage", f"journal:{journal}", "--out", str(tmp_path / "j"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert journal.read_bytes() == content  # nothing appended after the damage


@pytest.mark.parametrize(("field", "value"), [("seeds", "x"), ("grid", 3), ("surprise", 1)])
def test_damaged_saved_search_settings_are_one_line(field, value, cli_study, tmp_path, capsys):
    import json

    out = tmp_path / "copy"
    shutil.copytree(cli_study, out)
    saved = json.loads((out / "search.json").read_text())
    saved["options"][field] = value
    (out / "search.json").write_text(json.dumps(saved))
    assert main(["sweep", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search.json' is damaged" in err[0] and field in err[0], err


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_storage_is_refused(url, tmp_path, capsys):
    argv = ["sweep", *SMALL_FLAGS, "--sampler", "random", "--trials", "2", "--range", "lr=1e-4:1e-2:log"]
    assert main([*argv, "--storage", url, "--out", str(tmp_path / "m"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "an in-memory database ends with the process" in err[0], err
    assert not (tmp_path / "m").exists()


def _default_sigint() -> None:
    """A test run in the background (`cmd &` in a script) inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler: the workers get the default back, as a terminal gives."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def started(*argvs: list[str], env: dict | None = None):
    """Subprocesses that are killed (with their process groups) on the way out, whatever happens."""
    procs = [
        subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                         env={**os.environ, **(env or {})}, preexec_fn=_default_sigint)
        for a in argvs
    ]  # fmt: skip
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


def worker(storage: str, trials: int, batch: int, heartbeat: int = 1, sleep: float = 0.0, name: str = "s") -> list:
    return [sys.executable, WORKER, storage, name, "random", str(trials), str(batch), str(heartbeat), str(sleep)]


def states(storage: str, name: str = "s") -> list[optuna.trial.FrozenTrial]:
    from a2c_jax.population.study import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage, 1)).trials


def polled_states(storage: str, name: str = "s") -> list[optuna.trial.FrozenTrial]:
    """`states` while a worker may still be creating the study (then: none yet)."""
    try:
        return states(storage, name)
    except Exception:
        return []


def check_two_workers(storage: str) -> None:
    with started(worker(storage, 16, 2, sleep=0.3), worker(storage, 16, 2, sleep=0.3)) as procs:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    trials = states(storage)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    ran = [int(o.split("ran ")[1]) for o in outputs]
    assert all(r > 0 for r in ran), ran  # both workers took part
    assert len(complete) == sum(ran) and 16 <= len(complete) <= 16 + 2  # at most one round of overshoot
    assert len({tuple(sorted(t.params.items())) for t in complete}) == len(complete)  # no setting twice
    assert {t.user_attrs["worker"] for t in complete} == {f"worker-{p.pid}" for p in procs}
    for t in complete:
        assert t.value == pytest.approx(objective(t.params))


@pytest.mark.slow
def test_two_workers_share_a_sqlite_study(tmp_path):
    check_two_workers(f"sqlite:///{tmp_path / 'study.db'}")


def test_two_workers_share_a_journal_file(tmp_path):
    check_two_workers(f"journal:{tmp_path / 'study.log'}")


@pytest.mark.slow
def test_a_killed_workers_trials_are_retried_not_counted(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    with started(worker(storage, 6, 3, sleep=120)) as (slow,):
        wait_for(lambda: sum(t.state == TrialState.RUNNING for t in polled_states(storage)) == 3, slow, TIMEOUT)
        time.sleep(3.0)  # the third trial's first heartbeat follows its ask (a worker killed in between: see ask)
        os.killpg(slow.pid, signal.SIGKILL)
    killed = {t.number: t.params for t in states(storage)}
    with started(worker(storage, 6, 3)) as (fresh,):
        out = fresh.communicate(timeout=TIMEOUT)[0]
    assert fresh.returncode == 0, out
    trials = states(storage)
    assert [t.state for t in trials[:3]] == [TrialState.FAIL] * 3 and all(t.value is None for t in trials[:3])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    retried = {t.system_attrs["failed_trial"]: t.params for t in complete if "failed_trial" in t.system_attrs}
    assert retried == killed  # the same settings, run again by the live worker


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.slow
def test_interrupted_cli_study_requeues_and_resumes(sig, tmp_path):
    """A study worker stopped by SIGINT or SIGTERM fails its running trials and requeues their settings
    (exit 130 / 143); --resume trains them."""
    out = tmp_path / "s"
    # 16k steps per trial: a round trains for seconds even when its program is already in the
    # compilation cache, so the interrupt lands inside it
    long_flags = [*SMALL_FLAGS[:-1], "16000"]
    argv = [sys.executable, "-m", "a2c_jax.cli", "sweep", *long_flags, "--sampler", "random", "--trials", "2",
            "--batch", "2", "--seeds", "1", "--range", "lr=1e-4:1e-2:log", "--eval-episodes", "4", "--quiet",
            "--out", str(out)]  # fmt: skip
    storage = f"sqlite:///{(out / 'study.db').absolute()}"
    with started(argv) as (proc,):
        # both trials asked and their settings suggested (a signal between the two is a trial with no
        # setting: it is requeued empty and the resumed study samples it afresh)
        wait_for(lambda: (out / "search.json").exists() and sum(bool(t.params) for t in polled_states(storage)) == 2,
                 proc, TIMEOUT)  # fmt: skip
        proc.send_signal(sig)
        text = proc.communicate(timeout=TIMEOUT)[0]
    if proc.returncode == 0:
        pytest.fail(f"the round finished before the interrupt arrived: {text}")
    assert proc.returncode == 128 + sig and "interrupted" in text, text
    before = states(storage)
    assert [t.state for t in before[:2]] == [TrialState.FAIL] * 2
    assert [t.state for t in before[2:]] == [TrialState.WAITING] * 2
    assert main(["sweep", "--resume", str(out), "--quiet"]) == 0
    after = states(storage)
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert sorted(t.params["lr"] for t in complete) == sorted(t.params["lr"] for t in before[:2])


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql package, which `.ci/run`
    installs), started in a temporary directory and stopped afterwards."""
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql): the multi-worker test runs on SQLite")
    root = Path(tempfile.mkdtemp(prefix="a2c-jax-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)
    run(str(bindir / "initdb"), "-D", str(data), "-U", "a2c", "--auth=trust")
    options = f"-h 127.0.0.1 -p {port} -k {root}"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "a2c", "optuna")
        yield f"postgresql://a2c@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_postgres_study(postgres_url):
    check_two_workers(postgres_url)


BAD = [
    (["--sampler", "bayes", "--trials", "4"], "sampler"),
    (["--sampler", "tpe"], "--trials is required"),
    (["--sampler", "tpe", "--trials", "0"], "trials=0 is invalid"),
    (["--sampler", "tpe", "--trials", "4", "--batch", "0"], "batch=0 is invalid"),
    (["--trials", "4"], "--trials needs --sampler"),
    (["--sampler", "tpe", "--trials", "4", "--random", "3"], "--random draws a plain random sweep"),
    (["--sampler", "grid", "--trials", "4", "--range", "lr=1e-4:1e-2"], "takes --grid values only"),
    (["--sampler", "grid", "--trials", "3", "--grid", "lr=1e-4,1e-3"], "the grid has 2 points"),
    (["--sampler", "tpe", "--trials", "4", "--range", "num_steps=4:8.5"], "num_steps='8.5' is invalid"),
    (["--sampler", "tpe", "--trials", "4", "--range", "lr=0:1e-2"], "lr=0.0 is invalid: must be > 0"),
    (["--sampler", "tpe", "--trials", "4", "--storage", "nonsense"], "storage='nonsense' is invalid"),
    (["--sampler", "tpe", "--trials", "4", "--storage", "foodb://x/y"], "storage='foodb://x/y' is invalid"),
    pytest.param(
        ["--sampler", "tpe", "--trials", "4", "--storage", "postgresql://a2c@127.0.0.1:1/x"],
        "is unreachable",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("psycopg") is None, reason="the postgres extra (psycopg) is not installed"
        ),
    ),
    (["--sampler", "tpe", "--trials", "4", "--storage", "journal:/nonexistent/dir/j.log"], "does not exist"),
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_study_input_is_one_line_and_writes_nothing(extra, message, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["sweep", *SMALL_FLAGS, "--range", "ent_coef=0:0.1", *extra, "--out", str(out), "--quiet"]
    if "--range" in extra or "--grid" in extra:
        argv.remove("--range"), argv.remove("ent_coef=0:0.1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("a2c-jax: error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_joining_a_study_with_other_settings_is_refused(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="minimising", storage=storage, direction="minimize")
    other = optuna.create_study(study_name="other", storage=storage, direction="maximize")
    other.set_user_attr("a2c_jax", {"search_space": {}, "base_settings": {}, "seeds": 4, "eval_episodes": 16})
    argv = ["sweep", *SMALL_FLAGS, "--sampler", "tpe", "--trials", "2", "--range", "lr=1e-4:1e-2", "--storage", storage]
    for name, message in (("minimising", "exists and minimises"), ("other", "exists with a different")):
        out = tmp_path / name
        assert main([*argv, "--study-name", name, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert not out.exists()
