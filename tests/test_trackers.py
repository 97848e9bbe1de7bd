"""Experiment trackers: what `--log tensorboard` writes is read back from the event files (a plain
TFRecord reader with tensorboardX's protobufs) and compared with metrics.jsonl, the source of truth."""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from a2c_jax.cli import main
from a2c_jax.config import ConfigError
from a2c_jax.runs.trackers import parse_trackers

SMALL_ARGS = ["--preset", "sb3", "--num-envs", "4", "--num-steps", "8", "--quiet", "--eval-episodes", "4"]


def read_events(directory: Path) -> list:
    """Every Event of the TFRecord files in `directory` (length, crc, payload, crc per record), in
    file order, with TensorBoard's purge rule applied: a session START at step s drops earlier
    events at steps >= s (what a resumed run asks for)."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    events: list = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                events = [e for e in events if e.step < event.step]
            events.append(event)
    return events


def scalars_of(events: list) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("simple_value"):
                series = out.setdefault(value.tag, {})
                assert event.step not in series, f"{value.tag} logged twice at step {event.step}"
                series[event.step] = value.simple_value
    return out


def records_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_mirrors_metrics(run_dir: Path) -> dict[str, dict[int, float]]:
    events = read_events(run_dir / "tensorboard")
    scalars = scalars_of(events)
    records = records_of(run_dir)
    for name in ("loss", "policy_loss", "value_loss", "entropy", "learning_rate", "update"):
        assert sorted(scalars[f"train/{name}"]) == [r["env_steps"] for r in records], name
        for r in records:
            assert scalars[f"train/{name}"][r["env_steps"]] == pytest.approx(r[name], rel=1e-6), name
    ended = [r for r in records if r["episodes"] > 0]
    assert ended and sorted(scalars["train/episode_return"]) == [r["env_steps"] for r in ended]  # NaNs skipped
    tags = {v.tag for e in events for v in e.summary.value}
    assert any(t.startswith("settings") for t in tags) and "learning_curve" in tags
    return scalars


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None, reason="the tensorboard extra is not installed")
@pytest.mark.slow
def test_tensorboard_mirrors_metrics_and_survives_resume(tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    assert main(["train", *SMALL_ARGS, "--total-timesteps", "384", "--log-points", "12", "--run-dir", str(run_dir),
                 "--log", "tensorboard", "--checkpoint-seconds", "0"]) == 0  # fmt: skip
    assert max(assert_mirrors_metrics(run_dir)["train/loss"]) == 384
    # as after a crash between the last record and its checkpoint: the newest checkpoint is gone, so
    # resuming restarts at update 11 and logs env step 384 again; the reader must see it once
    shutil.rmtree(run_dir / "checkpoints" / "12")
    (run_dir / "summary.json").unlink()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    first = assert_mirrors_metrics(run_dir)
    assert max(first["train/loss"]) == 384
    # resuming with a larger total continues the same curves, without a step logged twice
    assert main(["train", "--resume", str(run_dir), "--total-timesteps", "640", "--quiet"]) == 0
    both = assert_mirrors_metrics(run_dir)
    assert (
        max(both["train/loss"]) == 640
        and {k: v for k, v in both["train/loss"].items() if k <= 384} == first["train/loss"]
    )


def test_unknown_tracker_and_missing_extra_are_one_line_errors(monkeypatch, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"log='tensorbord' is invalid: must be a comma-separated list of"):
        parse_trackers("tensorbord")
    assert parse_trackers("") == ()
    real = importlib.util.find_spec
    missing = {"tensorboardX", "wandb"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name))
    with pytest.raises(ConfigError, match=r"--log tensorboard needs the tensorboardX package: pip install 'a2c-jax\["):
        parse_trackers("tensorboard")
    with pytest.raises(ConfigError, match=r"--log wandb needs the wandb package: pip install 'a2c-jax\[wandb\]'"):
        parse_trackers("wandb")
    run_dir = tmp_path / "never"
    assert main(["train", *SMALL_ARGS, "--run-dir", str(run_dir), "--log", "tensorboard"]) == 2
    assert "pip install 'a2c-jax[tensorboard]'" in capsys.readouterr().err
    assert not run_dir.exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None, reason="the tensorboard extra is not installed")
def test_sweep_writes_each_member_as_a_tensorboard_run(tmp_path):
    """Each member's run holds its curves.npz curve (NaN bins skipped) and, in TensorBoard's
    hyperparameter table, its settings with the final return of results.csv."""
    import csv

    import numpy as np

    out = tmp_path / "sw"
    argv = ["sweep", "--preset", "sb3", "--num-envs", "4", "--num-steps", "8", "--total-timesteps", "384",
            "--grid", "lr=1e-3,3e-3", "--seeds", "2", "--eval-episodes", "4", "--log", "tensorboard"]  # fmt: skip
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    curves = np.load(out / "curves.npz")
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    members = sorted((out / "tensorboard").glob("member-*"))
    assert len(members) == len(rows) == 4
    for i, member in enumerate(members):
        curve = scalars_of(read_events(member))["sweep/episode_return"]
        finite = np.isfinite(curves["returns"][i])
        assert sorted(curve) == [int(s) for s in curves["env_steps"][i][finite]]
        np.testing.assert_allclose([curve[int(s)] for s in curves["env_steps"][i][finite]],
                                   curves["returns"][i][finite], rtol=1e-6)  # fmt: skip
        table = scalars_of(read_events(member / "hparams"))
        assert table["hparam/final_return"][0] == pytest.approx(float(rows[i]["final_return"]), rel=1e-6)


def wandb_records(parent: Path) -> list:
    """Every record of the offline W&B runs under `parent`/wandb: the .wandb file is a LevelDB-style
    log (a 7-byte header, then 32 KiB blocks of records: crc, length, type FULL/FIRST/MIDDLE/LAST)
    whose payloads are W&B's own `Record` protobufs."""
    from wandb.proto.wandb_internal_pb2 import Record

    records = []
    for path in sorted(parent.glob("wandb/offline-run-*/run-*.wandb")):
        data = path.read_bytes()
        assert data[:4] == b":W&B"
        pos, pending = 7, b""
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
                pos += 32768 - pos % 32768
                continue
            _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            if kind == 0:
                pos += 32768 - pos % 32768
                continue
            payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
            pending = payload if kind in (1, 2) else pending + payload
            if kind in (1, 4):
                records.append(Record.FromString(pending))
    return records


def run_cli(argv: list[str], cwd: Path) -> None:
    """The CLI in a subprocess (wandb patches the process's streams), offline W&B."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    code = "import sys; from a2c_jax.cli import run; sys.argv[0] = 'a2c-jax'; run()"
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]


WANDB_MISSING = importlib.util.find_spec("wandb") is None


@pytest.mark.skipif(WANDB_MISSING, reason="the wandb extra is not installed")
@pytest.mark.slow
def test_wandb_offline_run_mirrors_metrics(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(["train", *SMALL_ARGS, "--total-timesteps", "384", "--log-points", "12", "--run-dir", str(run_dir),
             "--log", "wandb"], tmp_path)  # fmt: skip
    records = wandb_records(run_dir)
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.HasField("history")]  # fmt: skip
    logged = {h["env_steps"]: h for h in history if "train/loss" in h}
    expected = records_of(run_dir)
    assert sorted(logged) == [r["env_steps"] for r in expected]
    for r in expected:
        assert logged[r["env_steps"]]["train/loss"] == pytest.approx(r["loss"], rel=1e-9)
        assert logged[r["env_steps"]]["train/update"] == r["update"]
    image = next(h for h in history if "learning_curve/_type" in h)
    assert image["learning_curve/_type"] == "image-file" and image["env_steps"] == 384
    (png,) = run_dir.glob("wandb/offline-run-*/files/" + image["learning_curve/path"])
    assert png.read_bytes() == (run_dir / "learning_curve.png").read_bytes()
    config = {u.key: json.loads(u.value_json) for r in records if r.HasField("run") for u in r.run.config.update}
    assert config["hparams"]["lr"] == pytest.approx(7e-4) and config["config"]["num_envs"] == 4


@pytest.mark.skipif(WANDB_MISSING, reason="the wandb extra is not installed")
@pytest.mark.slow
def test_wandb_sweep_run_holds_the_members_table_and_curves(tmp_path):
    import csv

    out = tmp_path / "sw"
    run_cli(["sweep", "--preset", "sb3", "--num-envs", "4", "--num-steps", "8", "--total-timesteps", "384",
             "--grid", "lr=1e-3,3e-3", "--seeds", "2", "--eval-episodes", "4", "--log", "wandb", "--out", str(out),
             "--quiet"], tmp_path)  # fmt: skip
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    (members,) = out.glob("wandb/offline-run-*/files/media/table/members_*.table.json")
    table = json.loads(members.read_text())
    final = table["columns"].index("final_return")
    assert [row[final] for row in table["data"]] == pytest.approx([float(r["final_return"]) for r in rows])
    (curves,) = out.glob("wandb/offline-run-*/files/media/table/sweep/episode_return_*.table.json")
    assert len({line for _, line, _ in json.loads(curves.read_text())["data"]}) == len(rows) == 4


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None, reason="the tensorboard extra is not installed")
def test_pbt_writes_each_member_with_its_schedule(tmp_path):
    """PBT members as TensorBoard runs: fitness and the searched hyperparameter per generation equal
    schedule.csv (non-finite fitness skipped), the final return results.csv."""
    import csv

    out = tmp_path / "pbt"
    argv = ["pbt", "--preset", "sb3", "--num-envs", "4", "--num-steps", "8", "--total-timesteps", "384",
            "--grid", "lr=1e-4,3e-4,1e-3,3e-3", "--seeds", "1", "--interval", "4", "--eval-episodes", "4",
            "--log", "tensorboard"]  # fmt: skip
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    with (out / "schedule.csv").open() as f:
        schedule = list(csv.DictReader(f))
    with (out / "results.csv").open() as f:
        results = list(csv.DictReader(f))
    members = sorted((out / "tensorboard").glob("member-*"))
    assert len(members) == len(results) == 4
    for i, member in enumerate(members):
        scalars = scalars_of(read_events(member))
        mine = [r for r in schedule if int(r["member"]) == i]
        assert scalars["pbt/lr"] == {int(r["env_steps"]): pytest.approx(float(r["lr"]), rel=1e-6) for r in mine}
        fit = {int(r["env_steps"]): float(r["fitness"]) for r in mine if np.isfinite(float(r["fitness"]))}
        assert scalars.get("pbt/fitness", {}) == {k: pytest.approx(v, rel=1e-6) for k, v in fit.items()}
        table = scalars_of(read_events(member / "hparams"))
        assert table["hparam/final_return"][0] == pytest.approx(float(results[i]["final_return"]), rel=1e-6)


RLHF_RECORDS = [
    {"update": 0, "beta": 0.0, "eval_gold": 0.5, "eval_k1": 0.0},
    {"update": 0, "beta": 0.1, "eval_gold": 0.5, "eval_k1": 0.0},
    {"update": 10, "beta": 0.0, "loss": 2.0, "entropy": 1.5},
    {"update": 10, "beta": 0.1, "loss": 3.0, "entropy": 1.7},
    {"update": 20, "beta": 0.0, "loss": 1.0, "entropy": None, "eval_gold": 1.25, "eval_k1": 4.0},
    {"update": 20, "beta": 0.1, "loss": 1.5, "entropy": 1.6, "eval_gold": 0.75, "eval_k1": 1.0},
]


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None, reason="the tensorboard extra is not installed")
def test_rlhf_run_writes_one_tensorboard_run_per_beta(tmp_path):
    """`a2c-jax rlhf --log tensorboard`: each beta's metrics.jsonl fields against A2C updates (a field a
    line lacks, or a null, is a gap), its final gold reward in the hyperparameter table."""
    from a2c_jax.runs.trackers import log_rlhf

    log_rlhf(("tensorboard",), tmp_path, RLHF_RECORDS)
    members = sorted((tmp_path / "tensorboard").glob("member-*"))
    assert len(members) == 2
    for member, beta in zip(members, (0.0, 0.1), strict=True):
        got = scalars_of(read_events(member))
        mine = [r for r in RLHF_RECORDS if r["beta"] == beta]
        for field in ("loss", "entropy", "eval_gold", "eval_k1"):
            want = {r["update"]: r[field] for r in mine if r.get(field) is not None}
            assert got[f"rlhf/{field}"] == pytest.approx(want), (beta, field)
        table = scalars_of(read_events(member / "hparams"))
        assert table["hparam/final_return"][0] == pytest.approx(mine[-1]["eval_gold"])


def test_rlhf_refuses_an_unknown_tracker_before_any_work(tmp_path, capsys):
    out = tmp_path / "rlhf"
    assert main(["rlhf", "--out", str(out), "--log", "tensorbord", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("a2c-jax: error: log='tensorbord' is invalid"), lines
    assert not out.exists()


def test_the_plot_module_keeps_a_backend_pyplot_already_has():
    """Importing the plots (as train does, on a thread, before its learning curve) selects Agg only
    where pyplot is not imported yet: a notebook's inline backend is left alone."""
    code = (
        "import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot\n"
        "import a2c_jax.runs.plots; print(matplotlib.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "svg", out.stderr[-2000:]
    alone = "import matplotlib, a2c_jax.runs.plots; print(matplotlib.get_backend())"
    out = subprocess.run([sys.executable, "-c", alone], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().lower() == "agg", out.stderr[-2000:]
