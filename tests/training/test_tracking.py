"""Experiment tracking: TensorBoard events and an MLflow run in the run folder, continued on resume."""

from __future__ import annotations

import json
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
