"""The augmentation study on tiny data: every arm, paired comparisons, no leakage, early errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medgan.config import config_from_dict
from medgan.errors import ConfigError, InputError
from medgan.study import run_study
from tests.conftest import TINY_DIFFUSION, tiny_config


def _study_cfg(**study: object) -> dict:
    cfg = tiny_config(steps=2)
    cfg["classifier"] = {"epochs": 2, "width": 4, "patience": 2, "batch_size": 16}
    cfg["study"] = {
        "arms": ["real", "classical", "cgan", "cyclegan", "cgan+classical"],
        "ratios": [0.5],
        "fractions": [1.0, 0.5],
        "seeds": 2,
        "steps": {"cgan": 2, "cyclegan": 2},
        "models": {"cyclegan": {"g_channels": 8, "n_res_blocks": 1, "d_channels": 8, "pool_size": 2}},
        "n_boot": 20,
        **study,
    }
    cfg["gates"] = None  # quality gates of the study's synthesizers: tested below, with a cheap extractor
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


def test_a_diffusion_arm_beside_the_gan_arms(tiny_data_dir: Path, tmp_path: Path) -> None:
    """A new kind's arms (`diffusion`, `diffusion+classical`, a lever on it) run through the same study
    machinery: trained from ``study.models.diffusion`` for ``study.steps.diffusion`` steps, with
    its samples pooled like the cGAN's (sized pools, confidence filtering from a wider pool)."""
    cfg = _study_cfg(
        arms=["real", "cgan", "diffusion", "diffusion+classical"],
        fractions=[1.0],
        seeds=1,
        steps={"cgan": 2, "diffusion": 2},
        models={"diffusion": {k: v for k, v in TINY_DIFFUSION.items() if k != "kind"}},
        levers=[{"name": "conf", "arms": ["diffusion"], "min_confidence": 0.0}],
    )
    report = run_study(config_from_dict(cfg), tiny_data_dir, tmp_path)
    res = pd.read_csv(tmp_path / "results.csv")
    assert set(res["arm"]) == {"real", "cgan", "diffusion", "diffusion+classical", "diffusion[conf]"}
    assert (res.loc[res["arm"].str.startswith("diffusion"), "n_synthetic"] > 0).all()
    assert res.loc[res["arm"] != "real", "auc_diff_vs_real"].notna().all()
    meta = json.loads(
        next((tmp_path / "synthesizers" / "diffusion-f1" / "checkpoints").glob("*.json")).read_text()
    )
    assert meta["model"]["kind"] == "diffusion" and meta["step"] == 2 and meta["model"]["channels"] == [8, 16]
    assert {r["arm"] for r in report["summary"]} == set(res["arm"])


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
    for p in cells.glob("*-s1*.json"):
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


def test_a_study_killed_mid_way_keeps_every_cell_it_finished(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long study (an hour and more) saves each cell when it finishes, not when the last one does."""
    import medgan.classifier as clf_pkg

    cfg = _study_cfg(arms=["real", "cgan"], fractions=[1.0], seeds=2)
    original = clf_pkg.train_classifier
    calls: list[int] = []

    def dies_on_the_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the machine goes away during seed 1's real cell
        return original(*a, **k)

    monkeypatch.setattr(clf_pkg, "train_classifier", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_study(config_from_dict(cfg), tiny_data_dir, tmp_path)
    cells = next((tmp_path / "cells").iterdir())
    assert (
        sorted(p.name for p in cells.glob("*.json")) == sorted(p.name for p in cells.glob("*-s0*.json"))
        and len(list(cells.glob("*-s0*.json"))) == 2
    )  # seed 0's real and cgan cells are on disk
    calls.clear()
    monkeypatch.setattr(clf_pkg, "train_classifier", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    run_study(config_from_dict(cfg), tiny_data_dir, tmp_path)
    assert len(calls) == 2  # the rerun trains only seed 1's two cells


def test_levers_run_as_extra_arms_paired_with_real_and_classical(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medgan.classifier as clf_pkg

    levers = [
        {"name": "w0.25", "synthetic_weight": 0.25},
        {"name": "conf", "min_confidence": 0.99},
        {"name": "pre", "pretrain": True},
        {"name": "bal", "policy": "balance", "ratios": [1.0]},
    ]
    cfg = _study_cfg(arms=["real", "cgan", "classical"], fractions=[1.0], seeds=1, levers=levers)
    calls: list[dict] = []
    original = clf_pkg.train_classifier

    def recording(x, y, *a, **k):
        calls.append(
            {"n": len(x), "weights": k.get("sample_weight"), "init": k.get("init_state") is not None}
        )
        return original(x, y, *a, **k)

    monkeypatch.setattr(clf_pkg, "train_classifier", recording)
    report = run_study(config_from_dict(cfg), tiny_data_dir, tmp_path)
    res = pd.read_csv(tmp_path / "results.csv").set_index("arm")
    # real and classical run first whatever the order in the config, then the plain arms, then the levers
    assert list(res.index) == [
        "real",
        "classical",
        "cgan",
        "cgan[w0.25]",
        "cgan[conf]",
        "cgan[pre]",
        "cgan[bal]",
    ]
    assert res.loc["cgan[w0.25]", "lever"] == "w0.25" and pd.isna(res.loc["cgan", "lever"])
    by_n = [c for c in calls if c["weights"] is not None and (c["weights"] < 1).any()]
    assert len(by_n) == 1 and set(by_n[0]["weights"].round(6)) == {1.0, 0.25}  # the weight lever, and only it
    # filtered by the real classifier from a 4x pool; what it could not fill is recorded, not an error
    short = res.loc["cgan[conf]"].get("synthetic_shortfall", 0)
    short = 0 if pd.isna(short) else short
    assert res.loc["cgan[conf]", "n_synthetic"] + short == res.loc["cgan", "n_synthetic"]
    assert res.loc["cgan[pre]", "n_synthetic"] == res.loc["cgan", "n_synthetic"] > 0
    assert sum(c["init"] for c in calls) == 1  # one fine-tuning from the synthetic pre-training
    assert res.loc["cgan[bal]", "n_synthetic"] == 0  # tiny data is balanced: nothing to fill up
    # every synthetic arm is paired with real-only and with classical; classical only with real
    syn = res.loc[[a for a in res.index if a.startswith("cgan")]]
    assert syn["auc_diff_vs_real"].notna().all() and syn["auc_diff_vs_classical"].notna().all()
    assert syn["delong_p_vs_classical"].between(0, 1).all()
    assert pd.isna(res.loc["classical", "auc_diff_vs_classical"]) and pd.notna(
        res.loc["classical", "auc_diff_vs_real"]
    )
    summary = {r["arm"]: r for r in report["summary"]}
    assert summary["cgan[pre]"]["verdict_vs_classical"] == "not computed"  # one seed: no interval
    assert "verdict_vs_classical" not in summary["classical"]


def test_bad_levers_are_refused_at_load() -> None:
    with pytest.raises(ConfigError, match=r"study\.levers"):
        config_from_dict(
            _study_cfg(levers=[{"name": "a", "pretrain": True}, {"name": "a", "pretrain": False}])
        )
    with pytest.raises(ConfigError, match=r"study\.levers"):
        config_from_dict(_study_cfg(levers=[{"name": "a/b"}]))
    with pytest.raises(ConfigError, match=r"study\.levers"):
        config_from_dict(_study_cfg(levers=[{"name": "a", "arms": ["real"]}]))


# ------------------------------------------------------------------------------------ quality gates


def _gated(features: str, fid_ratio_max: float, skip: bool) -> dict:
    cfg = _study_cfg(arms=["real", "cgan", "cyclegan"], fractions=[1.0], seeds=1)
    cfg["study"]["skip_failing_synthesizers"] = skip
    cfg["pipeline"] = {"features": features}
    off = dict.fromkeys(
        ("recall_min", "precision_min", "ms_ssim_max", "cas_auc_min", "memorized_max", "fid_ratio_max")
    )
    # FID can never be below 1e-6 x the floor: a gate that fails; a margin of 1: a gate that passes
    cfg["gates"] = {**off, "fid_ratio_max": fid_ratio_max, "label_agreement_margin": 1.0}
    return cfg


def test_failing_synthesizers_are_reported_and_skipped_on_request(
    tiny_data_dir: Path, tmp_path: Path, pool_features: str, capsys: pytest.CaptureFixture
) -> None:
    import yaml

    from medgan.cli import main

    out = tmp_path / "study"
    (tmp_path / "skip.yaml").write_text(yaml.safe_dump(_gated(pool_features, 1e-6, skip=True)))
    args = ["study", str(tmp_path / "skip.yaml"), "--out", str(out), "--data-dir", str(tiny_data_dir)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    md = (out / "report.md").read_text()  # medgan study writes its own report, gates included
    assert "## Does synthetic data help" in md and "cgan-f1 (validation split)" in md
    assert (out / "report.html").is_file() and f"report: {out / 'report.html'}" in printed
    assert "FAILED GATES: cgan-f1 fails 1 of 2 quality gates (FID / real-real floor)" in printed
    assert "FAILED GATES: cyclegan-f1 fails 1 of 2" in printed and "skipped" in printed
    rep = json.loads((out / "study.json").read_text())
    assert set(pd.read_csv(out / "results.csv")["arm"]) == {"real"}  # no cell used a failing synthesizer
    assert {(k["arm"], k["fraction"], k["seed"]) for k in rep["skipped"]} == {
        ("cgan", 1.0, 0),
        ("cyclegan", 1.0, 0),
    }
    skipped_rows = [r for r in rep["summary"] if r["arm"] != "real"]
    assert len(skipped_rows) == 2 and all(
        r["seeds"] == 0 and r["verdict"].startswith("skipped") for r in skipped_rows
    )
    for name in ("cgan-f1", "cyclegan-f1"):
        g = rep["gates"][name]
        by = {r["gate"]: r for r in g["results"]}
        assert g["passed"] is False and by["fid_ratio_max"]["passed"] is False
        agreement = by["label_agreement_margin"]  # label scores were computed for both kinds
        assert agreement["passed"] is True and 0.0 <= agreement["value"] <= 1.0
        assert (out / "gates" / f"{name}.json").is_file()
    cyc = json.loads((out / "gates" / "cyclegan-f1.json").read_text())["metrics"]
    assert set(cyc["directions"]) == {"A2B", "B2A"} and cyc["directions"]["A2B"]["floor_n"] == 4

    # the same study without skipping: the arms run (real's cell reused: the flag is not in the fingerprint)
    rep = run_study(config_from_dict(_gated(pool_features, 1e-6, skip=False)), tiny_data_dir, out)
    res = pd.read_csv(out / "results.csv")
    assert set(res["arm"]) == {"real", "cgan", "cyclegan"} and rep["skipped"] == []
    assert rep["gates"]["cgan-f1"]["passed"] is False and len(list((out / "cells").iterdir())) == 1
    # gates that pass: nothing is skipped even when skipping is on
    rep = run_study(config_from_dict(_gated(pool_features, 1e6, skip=True)), tiny_data_dir, out)
    assert rep["skipped"] == [] and all(g["passed"] for g in rep["gates"].values())


def test_report_names_arms_worse_than_classical(tmp_path: Path) -> None:
    from medgan.report import build_report

    row = {"fraction": 1.0, "seeds": 3, "auc_ci": [0.8, 0.9]}
    study = {
        "n_test": 8,
        "n_train": 40,
        "n_val": 8,
        "study": {"seeds": 3},
        "summary": [
            {**row, "arm": "real", "ratio": None, "auc": 0.85},
            {
                **row,
                "arm": "classical",
                "ratio": None,
                "auc": 0.9,
                "auc_diff_vs_real": 0.05,
                "verdict": "helped",
            },
            {
                **row,
                "arm": "cgan[w0.5]",
                "ratio": 1.0,
                "auc": 0.84,
                "auc_diff_vs_real": -0.01,
                "auc_diff_ci": [-0.03, 0.01],
                "verdict": "no clear difference",
                "auc_diff_vs_classical": -0.06,
                "auc_diff_vs_classical_ci": [-0.09, -0.03],
                "verdict_vs_classical": "worse than classical",
            },
        ],
    }
    md = build_report(tmp_path, "t", {"study": study})[0].read_text()
    assert "| verdict_vs_classical |" in md and "| worse than classical |" in md
    assert "did worse than classical augmentation alone (paired CI below 0) for: cgan[w0.5] (ratio 1" in md
    assert "did better than classical" not in md


# ------------------------------------------------------------------ small N: real+, repeats, curves


def test_real_plus_adds_as_many_real_slices_as_the_synthetic_arm(tiny_data_dir: Path, tmp_path: Path) -> None:
    """The positive control: at a fraction below 1, ``real+`` adds the number of *real* slices the
    synthetic arm adds at the same ratio, in the same class mix, from the slices the subset left
    out; repeats and ratios may differ per fraction; the summary carries power, Holm and the
    learning curve's equivalents."""
    cfg = _study_cfg(
        arms=["real", "real+", "cgan"],
        fractions=[0.5, 1.0],
        seeds={0.5: 2, 1.0: 1},
        ratios={0.5: [0.5, 1.0], 1.0: [0.5]},
    )
    report = run_study(config_from_dict(cfg), tiny_data_dir, tmp_path)
    res = pd.read_csv(tmp_path / "results.csv")
    plus = res[res["arm"] == "real+"]
    assert set(plus["fraction"]) == {0.5} and len(plus) == 2 * 2  # no real+ at 100 %: nothing left to add
    assert len(res[(res["fraction"] == 1.0)]) == 2  # one seed at 100 %: real and cgan at ratio 0.5
    for _, r in plus.iterrows():
        syn = res[(res["arm"] == "cgan") & (res["ratio"] == r["ratio"]) & (res["seed"] == r["seed"])].iloc[0]
        real = res[(res["arm"] == "real") & (res["fraction"] == 0.5) & (res["seed"] == r["seed"])].iloc[0]
        assert r["n_added"] == syn["n_synthetic"] > 0 and r["n_synthetic"] == 0
        assert r["n_real"] == real["n_real"] + r["n_added"]
    assert (
        res["one_class"].isin([True, False]).all()
        and res.loc[res["arm"] == "real", "threshold"].notna().all()
    )
    summary = {(r["arm"], r["ratio"], r["fraction"]): r for r in report["summary"]}
    cg = summary[("cgan", 1.0, 0.5)]
    assert cg["seeds"] == 2 and cg["mde"] is not None and cg["mde"] >= 0 and 0 <= cg["p_holm"] <= 1
    assert cg["p_holm"] >= cg["p_value"] and cg["verdict_holm"] in {"helped", "hurt", "no clear difference"}
    assert summary[("cgan", 0.5, 1.0)]["verdict"] == "not computed"  # one seed: no interval, no verdict
    design = report["design"]
    assert design["seeds"] == {"0.5": 2, "1": 1} and design["synthesizer_steps"]["cgan"] == {"0.5": 1, "1": 2}
    meta = json.loads(
        next((tmp_path / "synthesizers" / "cgan-f0.5-s0" / "checkpoints").glob("*.json")).read_text()
    )
    assert meta["step"] == 1  # 2 steps x sqrt(0.5), recorded in the checkpoint
    curve = report["learning_curve"]
    assert {p["arm"] for p in curve["points"]} == {"real", "real+"} and len(curve["fit"]["n"]) >= 2


def test_more_repeats_reuse_the_finished_cells(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medgan.classifier as clf_pkg

    cfg = _study_cfg(arms=["real", "real+"], fractions=[0.5], seeds=1, ratios=[2.0])
    run_study(config_from_dict(cfg), tiny_data_dir, tmp_path)
    calls: list[int] = []
    original = clf_pkg.train_classifier
    monkeypatch.setattr(clf_pkg, "train_classifier", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    run_study(
        config_from_dict({**cfg, "study": {**cfg["study"], "seeds": 2, "ratios": [1.0, 2.0]}}),
        tiny_data_dir,
        tmp_path,
    )
    assert len(calls) == 1 + 2 + 1  # seed 1's real and real+ x 2 ratios, seed 0's real+ at ratio 1
    calls.clear()  # a larger top ratio lengthens every classifier epoch of the fraction: all retrain
    run_study(
        config_from_dict({**cfg, "study": {**cfg["study"], "seeds": 1, "ratios": [1.0, 4.0]}}),
        tiny_data_dir,
        tmp_path,
    )
    assert len(calls) == 3


def test_every_cell_of_a_fraction_takes_the_same_steps(tiny_data_dir: Path, tmp_path: Path) -> None:
    """``study.equal_steps`` (the default): every classifier of a fraction trains on epochs as long
    as its largest training set, so an arm that adds slices does not also take more optimizer steps;
    ``false`` is one pass over each cell's own set (the old behaviour, and the old cache)."""
    cfg = _study_cfg(arms=["real", "classical", "real+"], fractions=[0.5, 1.0], seeds=1, ratios=[0.5, 1.0])
    report = run_study(config_from_dict(cfg), tiny_data_dir, tmp_path / "eq")
    res = pd.read_csv(tmp_path / "eq" / "results.csv")
    half = res[res["fraction"] == 0.5]
    top = half["n_real"].max()  # real+ at ratio 1: the largest training set at 50 %
    assert (half["epoch_samples"] == top).all() and top == 2 * half.loc[half["arm"] == "real", "n_real"].iloc[
        0
    ]
    full = res[res["fraction"] == 1.0]  # no arm adds slices at 100 % (real+ has none left): one pass
    assert (full["epoch_samples"] == full["n_real"]).all()
    assert report["design"]["equal_steps"] is True
    assert report["design"]["classifier_epoch_samples"] == {"0.5": top, "1": 0}
    old = {**cfg, "study": {**cfg["study"], "equal_steps": False}}
    run_study(config_from_dict(old), tiny_data_dir, tmp_path / "old")
    res_old = pd.read_csv(tmp_path / "old" / "results.csv")
    assert (res_old["epoch_samples"] == res_old["n_real"]).all()
    fp = {p.name for p in (tmp_path / "eq" / "cells").iterdir()} | {
        p.name for p in (tmp_path / "old" / "cells").iterdir()
    }
    assert len(fp) == 1  # the option is in the cell keys, not the fingerprint: one cache serves both


def test_a_three_class_ordinal_study_compares_every_arm(tmp_path: Path) -> None:
    """More than two classes: paired differences of the macro AUC (bootstrap test per cell), balanced
    accuracy and the weighted kappa, verdicts over seeds, per-class one-vs-rest AUC."""
    from tests.conftest import write_fake_medmnist

    write_fake_medmnist(tmp_path / "data" / "medmnist" / "tri.npz", n_train=48, n_classes=3)
    cfg = _study_cfg(
        arms=["real", "classical", "real+"], fractions=[0.5], seeds=2, ratios=[1.0], ordinal=True
    )
    cfg["data"] = {"source": {"kind": "medmnist", "name": "tri"}}
    report = run_study(config_from_dict(cfg), tmp_path / "data", tmp_path / "s")
    res = pd.read_csv(tmp_path / "s" / "results.csv")
    others = res[res["arm"] != "real"]
    assert others["auc_diff_vs_real"].notna().all() and others["bootstrap_p"].between(0, 1).all()
    assert others["kappa_diff_vs_real"].notna().all() and others["balanced_acc_diff_vs_real"].notna().all()
    assert {"auc_0", "auc_1", "auc_2"} <= set(res.columns)
    summary = {r["arm"]: r for r in report["summary"]}
    for arm in ("classical", "real+"):
        assert summary[arm]["verdict"] in {"helped", "hurt", "no clear difference"}
        assert summary[arm]["metric"] == "macro AUC (one-vs-rest)" and "kappa" in summary[arm]


def test_an_ensemble_cell_averages_its_classifiers(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``study.ensemble``: k classifiers per cell (member 0 seeded as the single one), their mean
    probability scored; cells of another ensemble size are other cells, so both can be kept."""
    import medgan.classifier as clf_pkg

    cfg = _study_cfg(arms=["real", "real+"], fractions=[0.5], seeds=1, ratios=[1.0], ensemble=1)
    single = run_study(config_from_dict(cfg), tiny_data_dir, tmp_path)
    seeds: list[int] = []
    original = clf_pkg.train_classifier
    monkeypatch.setattr(
        clf_pkg, "train_classifier", lambda *a, **k: (seeds.append(a[5].seed), original(*a, **k))[1]
    )
    both = run_study(
        config_from_dict({**cfg, "study": {**cfg["study"], "ensemble": {0.5: 2}}}), tiny_data_dir, tmp_path
    )
    assert len(seeds) == 4 and seeds[0] == seeds[2] == 0 and seeds[1] == seeds[3] != 0  # 2 cells x 2 members
    cells = next((tmp_path / "cells").iterdir())
    m = both["design"]["classifier_epoch_samples"]["0.5"]
    assert {p.name for p in cells.glob("*-e2-m*.json")} == {
        f"real-rna-f0.5-s0-e2-m{m}.json",
        f"real--r1-f0.5-s0-e2-m{m}.json",
    }
    assert len(list(cells.glob("*.json"))) == 4  # the single-classifier cells are kept beside them
    assert both["design"]["ensemble"] == {"0.5": 2} and single["design"]["ensemble"] == {"0.5": 1}


@pytest.mark.integration
def test_a_three_class_study_on_real_ultrasound(data_dir: Path, tmp_path: Path) -> None:
    """BUSI's breast ultrasound (normal / benign / malignant, ordered grades) at 28 px: the study
    pairs every arm with real-only data on the macro AUC (bootstrap test per cell), balanced
    accuracy and the weighted kappa, and gives verdicts over seeds."""
    import numpy as np
    from PIL import Image

    src = data_dir / "busi" / "labels.csv"
    if not src.is_file():
        pytest.skip("BUSI is not in the data directory")
    rows = pd.read_csv(src)
    classes = ["normal", "benign", "malignant"]
    imgs = np.stack(
        [np.asarray(Image.open(src.parent / p).convert("L").resize((28, 28))) for p in rows["path"]]
    )
    labels = rows["label"].map(classes.index).to_numpy()
    split = np.random.default_rng(0).choice(["train", "val", "test"], len(rows), p=[0.7, 0.15, 0.15])
    arrays = {}
    for name in ("train", "val", "test"):  # a MedMNIST-format file in tmp_path; BUSI stays where it is
        arrays[f"{name}_images"], arrays[f"{name}_labels"] = imgs[split == name], labels[split == name, None]
    (tmp_path / "data" / "medmnist").mkdir(parents=True)
    np.savez(tmp_path / "data" / "medmnist" / "busi28.npz", **arrays)
    cfg = _study_cfg(arms=["real", "classical"], fractions=[1.0], seeds=2, ordinal=True)
    cfg["data"] = {"source": {"kind": "medmnist", "name": "busi28"}}
    cfg["classifier"] = {"epochs": 3, "patience": 2}
    report = run_study(config_from_dict(cfg), tmp_path / "data", tmp_path / "s")
    res = pd.read_csv(tmp_path / "s" / "results.csv")
    assert {"auc_0", "auc_1", "auc_2", "kappa"} <= set(res.columns)  # one-vs-rest AUC per class
    cl = res[res["arm"] == "classical"]
    assert cl["auc_diff_vs_real"].notna().all() and cl["bootstrap_p"].between(0, 1).all()
    row = next(r for r in report["summary"] if r["arm"] == "classical")
    assert row["metric"] == "macro AUC (one-vs-rest)" and row["verdict"] in {
        "helped",
        "hurt",
        "no clear difference",
    }
    assert row["kappa_diff_vs_real"] is not None and row["mde"] is not None
