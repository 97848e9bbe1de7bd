"""Many devices and many processes, on the CPU: forced host devices in a subprocess, and several
`jax.distributed` processes on the loopback talking through gloo. Every subprocess has a timeout and
is killed by the test that started it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import CLI

import a2c_jax.runs.runner as runner
from a2c_jax.cli import main, one_device_per_core
from a2c_jax.core.train import build_agent
from a2c_jax.runs.checkpoint import checkpoint_steps, restore_checkpoint

# the whole module is in the full suite only: multi-device and multi-process runs in subprocesses
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
TIMEOUT = 300
TRAIN = ["--preset", "sb3", "--num-envs", "8", "--num-steps", "8", "--quiet", "--eval-episodes", "2"]


def forced(devices: int) -> dict[str, str]:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(argv: list[str], env: dict[str, str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=30)


def final_state(run_dir: Path):
    like = runner.abstract_state(build_agent(runner.load_run_record(run_dir)[0]))
    return restore_checkpoint(run_dir / "checkpoints", like)


@pytest.fixture(scope="module")
def sharding_results() -> dict:
    proc = run([sys.executable, str(HERE / "_sharding_checks.py")], forced(4), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize("network", ["mlp_normalised", "gru"])
def test_sharded_update_equals_one_device(sharding_results, network):
    r = sharding_results[network]
    assert sharding_results["device_count"] == 4 and r["devices"] == 4
    # same random numbers whatever the device count, same computation to float32 reduction order
    assert r["init_diff"] < 1e-6 and r["state_diff"] < 1e-5 and r["metrics_diff"] < 1e-4, r
    assert r["obs_spec"] == "P('env',)" and r["episode_return_spec"] == "P('env',)"
    assert r["inner_specs"] == ["P('env',)"]
    assert r["params_replicated"] and r["obs_rms_replicated"]
    assert r["all_reduce"] > 0 and r["host_transfers"] == 0  # XLA's all-reduces; nothing leaves the devices
    if network == "gru":
        assert r["carry_specs"] == ["P('env',)"]


@pytest.mark.parametrize(("case", "mesh"), [("sweep_pop", [4, 1]), ("sweep_pop_x_env", [2, 2])])
def test_sharded_population_equals_unsharded(sharding_results, case, mesh):
    r = sharding_results[case]
    assert r["mesh"] == mesh
    assert r["final_diff"] == 0.0 and r["curve_diff"] < 1e-4, r
    assert len(set(r["finals"])) > 1  # members really differ


def test_population_split_over_cpu_devices_by_default(sharding_results):
    r = sharding_results["default_split"]
    # members alone are split, over as many CPU devices as divide the population; a sweep pads up to them
    assert r["meshes"] == {"1": None, "3": None, "4": [4, 1], "6": [2, 1]}
    assert r["devices"] == 4
    assert r["capped_devices"] == 1 and r["capped_diff"] == 0.0  # --max-population is never passed
    assert r["final_diff"] < 1e-3 and r["curve_diff"] < 1e-2, r


@pytest.mark.parametrize(
    ("argv", "flags", "expected"),
    [
        (["sweep", "--seeds", "2"], "", "--xla_force_host_platform_device_count=4"),
        (["pbt"], "--xla_cpu_foo=1", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=4"),
        (["train"], "", ""),  # one agent: splitting its envs would add an all-reduce per update
        (["train", "--num-envs", "512", "--devices=all"], "", "--xla_force_host_platform_device_count=4"),
        (["sweep"], "--xla_force_host_platform_device_count=1", "--xla_force_host_platform_device_count=1"),
        (["sweep", "--num-processes", "2"], "", ""),
        (["sweep", "--coordinator-address=127.0.0.1:1"], "", ""),
        (["rlhf"], "", ""),
        (["rlhf", "--devices", "2", "--fsdp", "2"], "", "--xla_force_host_platform_device_count=4"),
    ],
)
def test_one_device_per_core(monkeypatch, argv, flags, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    environ = {"XLA_FLAGS": flags} if flags else {}
    one_device_per_core(argv, environ)
    assert environ.get("XLA_FLAGS", "") == expected


def test_sweep_command_splits_members_over_the_cores(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    flags = ["--preset", "sb3", "--num-envs", "4", "--num-steps", "4", "--total-timesteps", "64", "--quiet"]
    argv = [*CLI, "sweep", *flags, "--grid", "lr=1e-3,3e-3", "--eval-episodes", "1", "--out", str(tmp_path / "s")]
    proc = run(argv, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cores = len(os.sched_getaffinity(0))
    assert ("split over 2 devices" in proc.stdout) == (cores >= 2), proc.stdout


def test_sharded_pbt_equals_unsharded(sharding_results):
    r = sharding_results["pbt"]
    assert r["copies"] > 0 and r["sources_equal"], r  # the exploit gather crossed devices
    assert r["final_diff"] == 0.0 and r["fitness_diff"] < 1e-3, r


def test_device_count_errors(tmp_path, capsys):
    assert main(["train", *TRAIN, "--devices", "2", "--run-dir", str(tmp_path / "a")]) == 2
    assert "devices='2' is invalid: only 1 device(s) are visible" in capsys.readouterr().err
    assert main(["train", *TRAIN, "--devices", "0", "--run-dir", str(tmp_path / "b")]) == 2
    assert "devices='0' is invalid: must be 'all' or a positive integer" in capsys.readouterr().err
    assert main(["train", *TRAIN, "--coordinator-address", "127.0.0.1:1", "--run-dir", str(tmp_path / "c")]) == 2
    assert "go together" in capsys.readouterr().err
    proc = run(
        [*CLI, "train", *TRAIN, "--num-envs", "6", "--devices", "all", "--run-dir", str(tmp_path / "d")], forced(4)
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "a2c-jax: error: num_envs=6 does not divide over 4 devices: use a multiple of 4 such as 8, or --devices 1 / 2"
    ]
    assert not any((tmp_path / n).exists() for n in "abcd")


def two_processes(run_dir: Path, port: int, extra: list[str]) -> list[subprocess.Popen]:
    flags = [*TRAIN, *extra, "--run-dir", str(run_dir), "--devices", "all", "--distributed-timeout", "20"]
    flags += ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]
    return [start([*CLI, "train", *flags, "--process-id", str(i)], forced(2)) for i in range(2)]


def test_two_processes_train_checkpoint_and_resume_on_one_device(tmp_path):
    multi, single = tmp_path / "multi", tmp_path / "single"
    procs = two_processes(multi, free_port(), ["--total-timesteps", "1280"])
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        stop_all(procs)
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    # only process 0 prints (gloo's own "[Gloo] Rank ... connected" lines come from C++ on both)
    assert "training CartPole-v1 (seed 0) on 4 device(s) in 2 process(es)" in outs[0][0]
    assert "greedy eval return" in outs[0][0]
    assert "a2c-jax" not in outs[1][0] and "greedy" not in outs[1][0] and "CartPole" not in outs[1][0]
    assert checkpoint_steps(multi / "checkpoints")[0] == 20
    # resume the 4-device, 2-process checkpoint in this process, on one device, and train further
    assert main(["train", "--resume", str(multi), "--total-timesteps", "1920", "--quiet", "--devices", "1"]) == 0
    assert main(["train", *TRAIN, "--total-timesteps", "1920", "--run-dir", str(single)]) == 0
    resumed, _, step = final_state(multi)
    reference, _, _ = final_state(single)
    assert step == 30
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(reference.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    records = [json.loads(line) for line in (multi / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == list(range(1, 31))


def test_processes_started_with_other_settings_are_refused(tmp_path):
    """Two processes of one run, one with --lr 0.0007 and one with --lr 0.05: both exit 2 before
    anything is written, the second naming the field and both values, the first saying another
    process differs."""
    port, run_dir = free_port(), tmp_path / "disagree"
    flags = [*TRAIN, "--run-dir", str(run_dir), "--devices", "all", "--distributed-timeout", "20"]
    flags += ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [
        start([*CLI, "train", *flags, "--lr", lr, "--process-id", str(i)], forced(2))
        for i, lr in enumerate(("0.0007", "0.05"))
    ]
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        stop_all(procs)
    assert [p.returncode for p in procs] == [2, 2], outs[0][1][-2000:] + outs[1][1][-2000:]
    last = [err.strip().splitlines()[-1] for _, err in outs]
    assert last[1] == (
        "a2c-jax: error: process 1 was started with lr=0.05 but process 0 with lr=0.0007: every process of a run "
        "needs the same settings"
    ), last
    assert last[0].startswith("a2c-jax: error: another process of this run was started with other settings"), last
    assert not run_dir.exists()


def test_unreachable_coordinator_is_a_clean_error(tmp_path):
    began = time.monotonic()
    proc = run(
        [*CLI, "train", *TRAIN, "--run-dir", str(tmp_path / "r"), "--coordinator-address", f"127.0.0.1:{free_port()}",
         "--num-processes", "2", "--process-id", "1", "--distributed-timeout", "3"],
        os.environ.copy(), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and time.monotonic() - began < 40
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "the coordinator 127.0.0.1:" in lines[0] and "could not be reached within 3s" in lines[0]
    assert not (tmp_path / "r").exists()


def test_a_dead_process_stops_the_others_and_the_checkpoint_survives(tmp_path):
    run_dir = tmp_path / "run"
    procs = two_processes(run_dir, free_port(), ["--total-timesteps", "6400000", "--checkpoint-seconds", "0.5"])
    try:
        deadline = time.monotonic() + TIMEOUT
        while not checkpoint_steps(run_dir / "checkpoints"):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                for p in procs:
                    p.kill()
                errs = [p.communicate(timeout=30)[1] for p in procs]
                pytest.fail("no checkpoint: " + " | ".join(errs))
            time.sleep(0.2)
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=120)
        stopped_after = time.monotonic() - killed
    finally:
        stop_all(procs)
    # JAX's coordination service ends the survivor once the dead one misses its heartbeats (20 s here);
    # it terminates from C++ (SIGABRT), so the message is JAX's own
    assert procs[0].returncode != 0 and stopped_after < 60, err[-2000:]
    assert "another task died" in err
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0  # the last good checkpoint loads


RLHF_SMALL = ["--width", "32", "--heads", "2", "--ref-steps", "4", "--rm-pairs", "16", "--rm-steps", "4",
              "--updates", "40", "--log-points", "10", "--eval-prompts", "8", "--batch", "8", "--quiet"]  # fmt: skip


def rlhf_metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def two_rlhf_processes(flags: list[str]) -> list[subprocess.Popen]:
    port = ["--coordinator-address", f"127.0.0.1:{free_port()}", "--num-processes", "2", "--distributed-timeout", "20"]
    return [start([*CLI, "rlhf", *flags, *port, "--process-id", str(i)], forced(2)) for i in range(2)]


def finish(procs: list[subprocess.Popen]) -> list[tuple[str, str]]:
    try:
        return [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        stop_all(procs)


def test_two_processes_run_rlhf_as_one_process_over_the_same_devices(tmp_path):
    """`a2c-jax rlhf` in 2 processes of 2 CPU devices each (gloo) against one process of 4 devices: a
    SIGTERM to process 1 during A2C stops both at the same chunk (exit 143, a checkpoint), the resumed
    pair finishes with the same stages and the same A2C updates as the one process to float32
    reduction order, and process 0 alone writes and prints; `--devices` short of every process's
    devices is refused by both processes in one line."""
    one, two = tmp_path / "one", tmp_path / "two"
    single = run([*CLI, "rlhf", "--out", str(one), "--stage-dir", str(tmp_path / "s1"), "--devices", "4",
                  *RLHF_SMALL], forced(4))  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    flags = ["--out", str(two), "--stage-dir", str(tmp_path / "s2"), *RLHF_SMALL, "--devices", "all"]
    procs = two_rlhf_processes(flags)
    try:
        deadline = time.monotonic() + TIMEOUT
        while max((r["update"] for r in rlhf_metrics(two)), default=0) < 8:  # A2C has run two chunks
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail("A2C did not start: " + " | ".join(err[-1000:] for _, err in finish(procs)))
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGTERM)
    finally:
        outs = finish(procs)
    assert [p.returncode for p in procs] == [143, 143], outs[0][1][-2000:] + outs[1][1][-2000:]
    stopped = checkpoint_steps(two / "checkpoints")[0]
    assert 8 <= stopped < 40 and f"a2c-jax rlhf --resume {two}" in outs[0][1]
    outs = finish(two_rlhf_processes(["--resume", str(two), "--stage-dir", str(tmp_path / "s2"), "--devices", "all"]))
    assert "beta 0.05:" in outs[0][0] and "beta" not in outs[1][0] and "wrote" not in outs[1][0], outs[0][1][-2000:]
    a, b = rlhf_metrics(one), rlhf_metrics(two)
    assert [(r["update"], r["beta"]) for r in a] == [(r["update"], r["beta"]) for r in b]
    assert [r["update"] for r in b] == list(range(0, 41, 4))
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for key in ra:
            if key not in ("update", "beta"):
                np.testing.assert_allclose(rb[key], ra[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert checkpoint_steps(two / "checkpoints")[0] == 40
    summary = json.loads((two / "summary.json").read_text())
    assert summary["reward_model_stage"] == json.loads((one / "summary.json").read_text())["reward_model_stage"]
    # a device count short of every process's devices: both processes refuse it in one line
    procs = two_rlhf_processes([*flags[:-1], "2"])
    outs = finish(procs)
    assert [p.returncode for p in procs] == [2, 2], outs[0][1][-2000:]
    assert "devices='2' is invalid in a run of 2 processes: use --devices all" in outs[0][1]
