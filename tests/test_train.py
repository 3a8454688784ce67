"""Training on the real BreastMNIST file: finite losses, right samples, round-tripping checkpoint, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medgan.cli import main
from medgan.config import config_from_dict
from medgan.synthesis.cgan import CGANSynthesizer
from medgan.train import train
from medgan.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _cfg(steps: int, **train_kw: object) -> dict:
    t = {"steps": steps, "batch_size": 32, "log_every": 1, "sample_every": steps, "checkpoint_every": 2}
    t.update(train_kw)
    return {
        "seed": 1,
        "data": {"source": {"kind": "medmnist", "name": "breastmnist"}},
        "model": {"g_channels": 64, "d_channels": 16},
        "train": t,
    }


@pytest.mark.integration
def test_short_cpu_run_on_breastmnist(data_dir: Path, tmp_path: Path) -> None:
    ckpt = train(config_from_dict(_cfg(6)), tmp_path / "run", data_dir)
    stats = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert len(stats) == 6 and all(np.isfinite(s["loss_d"]) and np.isfinite(s["loss_g"]) for s in stats)
    assert 0.0 <= stats[-1]["d_acc_real"] <= 1.0
    synth = CGANSynthesizer(ckpt)
    assert synth.classes == ["malignant", "normal, benign"] and synth.shape == (1, 28, 28)
    imgs = synth.generate([0, 1, 1], [1, 2, 3])
    assert imgs.shape == (3, 1, 28, 28) and imgs.min() >= -1 and imgs.max() <= 1
    meta = synth.meta
    assert meta.data.n_train == 546 and meta.data.intensity.mode == "dtype:uint8" and meta.meta_version == 2
    grid = tmp_path / "run" / "samples" / "step-0000006.png"
    assert grid.is_file()


@pytest.mark.integration
def test_resume_equivalence_on_breastmnist(data_dir: Path, tmp_path: Path) -> None:
    a = train(config_from_dict(_cfg(4)), tmp_path / "a", data_dir)
    train(config_from_dict(_cfg(2)), tmp_path / "b", data_dir)
    b = train(config_from_dict(_cfg(4)), tmp_path / "b", data_dir, resume=True)
    ta, tb = load_checkpoint(a)[0], load_checkpoint(b)[0]
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.integration
@pytest.mark.parametrize("loss", ["nonsaturating", "wgan-gp"])
def test_other_losses_train(data_dir: Path, tmp_path: Path, loss: str) -> None:
    cfg = _cfg(2, loss=loss, class_balance=True, diffaugment=["translation"])
    train(config_from_dict(cfg), tmp_path / loss, data_dir)
    last = json.loads((tmp_path / loss / "stats.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(last["loss_d"]) and ("gp" in last) == (loss == "wgan-gp")


@pytest.mark.integration
def test_cli_train_then_generate(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--set", "train.steps=2", "--set", "model.g_channels=32", "--set", "model.d_channels=16"]
    code = main(
        [
            "train",
            str(REPO / "configs/quickstart.yaml"),
            "--out",
            str(tmp_path / "r"),
            "--data-dir",
            str(data_dir),
            *args,
        ]
    )
    assert code == 0, capsys.readouterr().err
    code = main(
        [
            "train",
            str(REPO / "configs/quickstart.yaml"),
            "--out",
            str(tmp_path / "r"),
            "--data-dir",
            str(data_dir),
            *args,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--resume" in err
    code = main(
        [
            "generate",
            "--checkpoint",
            str(tmp_path / "r"),
            "--n-per-class",
            "2",
            "--out",
            str(tmp_path / "g"),
            "--format",
            "nifti",
        ]
    )
    assert code == 0 and len(list((tmp_path / "g" / "images").iterdir())) == 4
