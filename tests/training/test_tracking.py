"""Experiment tracking: TensorBoard events and an MLflow run in the run folder, continued on resume."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from medgan.config import config_from_dict
from medgan.errors import ConfigError
from medgan.train import train
from medgan.training import tracking
from medgan.training.tracking import grid_rows
from tests.conftest import tiny_config

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


def _events(folder: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list[int]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    images = {t: [e.step for e in acc.Images(t)] for t in acc.Tags()["images"]}
    return scalars, images


def test_tensorboard_and_mlflow_record_losses_scores_and_grids(tiny_data_dir: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = config_from_dict(tiny_config(steps=4, tracking=["tensorboard", "mlflow"]))
    run = tmp_path / "run"
    train(cfg, run, tiny_data_dir)
    scalars, images = _events(run / "tensorboard")
    for key in (
        "train/loss_d",
        "train/loss_g",
        "train/d_acc_real",
        "train/d_acc_fake",
        "train/lr_g",
        "train/lr_d",
    ):
        assert [s for s, _ in scalars[key]] == [1, 2, 3, 4], key
    stats = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert scalars["train/loss_d"][-1][1] == pytest.approx(stats[-1]["loss_d"], rel=1e-6)
    assert images["samples"] == [2, 4] and images["samples/0"] == [2, 4] and images["samples/1"] == [2, 4]

    rec = json.loads((run / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=rec["tracking_uri"])
    got = client.get_run(rec["run_id"])
    assert got.info.status == "FINISHED" and got.data.params["train.steps"] == "4"
    hist = [m.step for m in client.get_metric_history(rec["run_id"], "train/loss_g")]
    assert hist == [1, 2, 3, 4]
    assert (
        rec["tracking_uri"].startswith("sqlite:///") and str(run.resolve() / "mlruns") in rec["tracking_uri"]
    )


def test_resumed_run_continues_the_same_records(tiny_data_dir: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    run = tmp_path / "run"
    train(config_from_dict(tiny_config(steps=2, tracking=["tensorboard", "mlflow"])), run, tiny_data_dir)
    first = json.loads((run / "mlflow_run.json").read_text())["run_id"]
    train(
        config_from_dict(tiny_config(steps=4, tracking=["tensorboard", "mlflow"])),
        run,
        tiny_data_dir,
        resume=True,
    )
    rec = json.loads((run / "mlflow_run.json").read_text())
    assert rec["run_id"] == first
    steps = [
        m.step
        for m in MlflowClient(tracking_uri=rec["tracking_uri"]).get_metric_history(first, "train/loss_d")
    ]
    assert steps == [1, 2, 3, 4]
    scalars, _ = _events(run / "tensorboard")
    assert [s for s, _ in scalars["train/loss_d"]] == [1, 2, 3, 4]


def test_no_tracking_writes_nothing_and_missing_package_is_a_config_error(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    train(config_from_dict(tiny_config(steps=2, tracking=[])), run, tiny_data_dir)
    assert not (run / "tensorboard").exists() and not (run / "mlruns").exists()
    monkeypatch.setattr(tracking, "installed", lambda name: name != "mlflow")
    with pytest.raises(
        ConfigError, match=r"train\.tracking: mlflow is not installed; pip install 'medgan\[tracking\]'"
    ):
        train(config_from_dict(tiny_config(steps=2, tracking=["mlflow"])), tmp_path / "other", tiny_data_dir)
    assert not (tmp_path / "other").exists()
    assert tracking.resolve(None) == ["tensorboard"]  # the default, when TensorBoard is installed


def test_grid_rows_split_a_sample_sheet_per_class() -> None:
    from medgan.grids import make_grid

    imgs = np.stack([np.full((1, 5, 5), v, np.float32) for v in (0.1, 0.1, 0.1, 0.7, 0.7, 0.7)])
    rows = grid_rows(make_grid(imgs, 3), 2)
    assert [r.shape for r in rows] == [(1, 5, 3 * 7 + 2)] * 2
    assert np.isclose(rows[0][:, :, 2:7], 0.1).all() and np.isclose(rows[1][:, :, 2:7], 0.7).all()


def test_cyclegan_run_names_its_grid_rows(tiny_data_dir: Path, tmp_path: Path) -> None:
    cfg = tiny_config(steps=2, tracking=["tensorboard"])
    cfg["model"] = {
        "kind": "cyclegan",
        "domain_a": "0",
        "domain_b": "1",
        "g_channels": 8,
        "n_res_blocks": 1,
        "d_channels": 8,
        "pool_size": 2,
    }
    train(config_from_dict(cfg), tmp_path / "run", tiny_data_dir)
    scalars, images = _events(tmp_path / "run" / "tensorboard")
    assert {
        "samples",
        "samples/A",
        "samples/A2B",
        "samples/A2B2A",
        "samples/B",
        "samples/B2A",
        "samples/B2A2B",
    } <= set(images)
    assert "train/loss_g" in scalars


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("http://127.0.0.1:{port}", r"cannot reach the MLflow server at http://127\.0\.0\.1:\d+"),
        ("http://", r"is not a server URL"),
        ("ftp://example/x", r"unknown store scheme 'ftp'"),
        ("sqlite:///{ro}/mlflow.db", r"the store's folder .* cannot be written"),
        ("sqlite:/relative.db", r"is not a store MLflow takes"),
    ],
)
def test_an_unusable_mlflow_store_is_refused_before_anything_is_written(
    tiny_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    uri: str,
    match: str,
) -> None:
    """An unreachable server (MLflow would retry for minutes in silence), a malformed URI or an
    unwritable store: one line naming MLFLOW_TRACKING_URI, exit 2, no run folder."""
    import os

    import yaml

    from medgan.cli import main

    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    if os.access(ro, os.W_OK):  # root writes anywhere: a file in the way instead
        ro = tmp_path / "a_file"
        ro.write_text("x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.format(port=_closed_port(), ro=ro))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(steps=2, tracking=["mlflow"])))
    for cmd in ("train", "run"):
        out = tmp_path / cmd
        code = main([cmd, str(cfg), "--out", str(out), "--data-dir", str(tiny_data_dir)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "MLFLOW_TRACKING_URI" in err[0], err
        assert re.search(match, err[0]), err[0]
        assert not out.exists()


def test_a_corrupt_or_foreign_mlflow_record_on_resume_is_one_line(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    """Resuming with ``mlflow_run.json`` damaged, or naming a run the store does not hold: a one-line
    error naming the record and how to start a new MLflow run, not an internal error."""
    from medgan.errors import InputError

    run = tmp_path / "run"
    train(config_from_dict(tiny_config(steps=2, tracking=["mlflow"])), run, tiny_data_dir)
    record = run / "mlflow_run.json"
    good = record.read_text()
    more = config_from_dict(tiny_config(steps=4, tracking=["mlflow"]))
    record.write_text("{not json")
    with pytest.raises(InputError, match=r"mlflow_run\.json: not a readable MLflow run record"):
        train(more, run, tiny_data_dir, resume=True)
    record.write_text(good.replace(json.loads(good)["run_id"], "0" * 32))
    with pytest.raises(InputError, match=r"mlflow_run\.json: names MLflow run 0{32}, which the store"):
        train(more, run, tiny_data_dir, resume=True)


def test_a_store_lost_mid_run_warns_once_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow failing after the run started is one warning; the tracker goes on without it."""

    class _Gone:
        def log_batch(self, *a: object, **k: object) -> None:
            raise ConnectionError("server went away")

        log_image = set_terminated = log_batch

    t = tracking.Tracker([], tmp_path, "x")
    t.mlflow, t.run_id = _Gone(), "r"
    t.scalars({"loss": 1.0}, 1)
    t.scalars({"loss": 2.0}, 2)
    t.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MLflow stopped accepting records" in err[0] and t.mlflow is None
