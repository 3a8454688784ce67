"""The augmentation study on tiny data: every arm, paired comparisons, no leakage, early errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medgan.config import config_from_dict
from medgan.errors import ConfigError, InputError
from medgan.study import run_study
from tests.conftest import tiny_config


def _study_cfg(**study: object) -> dict:
    cfg = tiny_config(steps=2)
    cfg["classifier"] = {"epochs": 2, "width": 4, "patience": 2, "batch_size": 16}
    cfg["study"] = {
        "arms": ["real", "classical", "cgan", "cyclegan", "cgan+classical"],
        "ratios": [0.5],
        "fractions": [1.0, 0.5],
        "seeds": 2,
        "cgan_steps": 2,
        "cyclegan_steps": 2,
        "cyclegan": {"g_channels": 8, "n_res_blocks": 1, "d_channels": 8, "pool_size": 2},
        "n_boot": 20,
        **study,
    }
    return cfg


def test_study_runs_every_arm_and_pairs_with_real(tiny_data_dir: Path, tmp_path: Path) -> None:
    report = run_study(config_from_dict(_study_cfg()), tiny_data_dir, tmp_path)
    res = pd.read_csv(tmp_path / "results.csv")
    assert len(res) == 5 * 2 * 2  # arms x fractions x seeds
    assert set(res["arm"]) == {"real", "classical", "cgan", "cyclegan", "cgan+classical"}
    assert {
        "auc",
        "acc",
        "balanced_acc",
        "sensitivity",
        "specificity",
        "f1",
        "auc_ci_lo",
        "auc_ci_hi",
    } <= set(res)
    non_real = res[res["arm"] != "real"]
    assert non_real["auc_diff_vs_real"].notna().all() and non_real["delong_p"].between(0, 1).all()
    assert (res.loc[res["arm"] == "cgan", "n_synthetic"] > 0).all()
    summary = {(r["arm"], r["fraction"]): r for r in report["summary"]}
    assert summary[("cgan", 1.0)]["verdict"] in {"helped", "hurt", "no clear difference"}
    assert json.loads((tmp_path / "study.json").read_text())["n_test"] == 8
    # no leakage: a subset's synthesizer saw only that subset
    meta = json.loads(
        next((tmp_path / "synthesizers" / "cgan-f0.5-s1" / "checkpoints").glob("*.json")).read_text()
    )
    assert meta["data"]["n_train"] == 24 and meta["real_subset"] == {"fraction": 0.5, "seed": 1}


def test_bad_study_config_fails_before_training(tiny_data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"study\.ratios"):
        config_from_dict(_study_cfg(ratios=[0]))
    with pytest.raises(ConfigError, match=r"study\.fractions"):
        config_from_dict(_study_cfg(fractions=[1.5]))
    with pytest.raises(ConfigError, match="must include 'real'"):
        config_from_dict(_study_cfg(arms=["cgan"]))
    with pytest.raises(ConfigError, match=r"study\.arms"):
        config_from_dict(_study_cfg(arms=["real", "vae"]))
    with pytest.raises(InputError, match="keeps 1"):
        run_study(config_from_dict(_study_cfg(fractions=[0.05])), tiny_data_dir, tmp_path / "s")
    assert not (tmp_path / "s" / "synthesizers").exists()  # nothing trained


def test_study_resumes_finished_cells(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medgan.classifier as clf_pkg

    cfg = _study_cfg(arms=["real", "cgan"], fractions=[1.0], seeds=2, min_confidence=0.0)
    first = run_study(config_from_dict(cfg), tiny_data_dir, tmp_path)
    res1 = pd.read_csv(tmp_path / "results.csv")
    # as if killed after the first seed: drop seed 1's cells, then run again
    cells = next((tmp_path / "cells").iterdir())
    for p in cells.glob("*-s1.json"):
        p.unlink()
    trained: list[int] = []
    original = clf_pkg.train_classifier

    def counting(*a, **k):
        trained.append(1)
        return original(*a, **k)

    monkeypatch.setattr(clf_pkg, "train_classifier", counting)
    second = run_study(config_from_dict(cfg), tiny_data_dir, tmp_path)
    assert len(trained) == 2  # only seed 1's real and cgan cells were trained again
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results.csv"), res1)
    assert second["summary"] == first["summary"]
    # a different config does not reuse them
    trained.clear()
    run_study(
        config_from_dict({**cfg, "classifier": {**cfg["classifier"], "epochs": 1}}), tiny_data_dir, tmp_path
    )
    assert len(trained) == 4
