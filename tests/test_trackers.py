"""Experiment trackers: what `--log tensorboard` writes is read back from the event files (a plain
TFRecord reader with tensorboardX's protobufs) and compared with metrics.jsonl, the source of truth."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

from a2c_jax.cli import main
from a2c_jax.config import ConfigError
from a2c_jax.trackers import parse_trackers

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
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboardX" else real(name))
    with pytest.raises(ConfigError, match=r"--log tensorboard needs the tensorboardX package: pip install 'a2c-jax\["):
        parse_trackers("tensorboard")
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
