"""The segmentation study: arms paired per repeat, cached cells, and a report section (issue 28)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgan.config import config_from_dict
from medgan.errors import ConfigError
from medgan.report import _seg_study_section
from medgan.study import segmentation
from medgan.study.segmentation import run_seg_study, summarize
from medgan.training.checkpoint import checkpoint_step, list_checkpoints
from tests.conftest import tiny_config, tiny_spade_config

TINY_SEG = {"channels": [8, 16], "res_units": 0, "epochs": 3, "batch_size": 8, "patience": 3}


def _cfg(**seg: object):
    d = tiny_spade_config()
    d["segmenter"] = dict(TINY_SEG)
    d["seg_study"] = {"run": True, "seeds": 2, "ratios": [1.0], "fractions": [1.0, 0.6], **seg}
    return config_from_dict(d)


def test_every_arm_is_paired_with_real_and_cells_are_reused(
    tiny_spade_checkpoint: Path, tiny_pairs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg()
    real = segmentation.train_segmenter
    study = run_seg_study(cfg, tiny_pairs_dir, tmp_path / "seg", tiny_spade_checkpoint)
    s = {(r["arm"], r["fraction"]): r for r in study["summary"]}
    assert set(s) == {(a, f) for a in ("real", "classical", "pairs", "pairs+classical") for f in (1.0, 0.6)}
    assert s[("pairs", 1.0)]["n_synthetic"] == s[("pairs", 1.0)]["n_real"]  # ratio 1: as many synthetic pairs
    assert s[("real", 0.6)]["n_real"] < s[("real", 1.0)]["n_real"]
    for arm in ("classical", "pairs", "pairs+classical"):
        c = s[(arm, 1.0)]["vs_real"]
        assert c["n"] == 2 and "p_holm" in c and c["verdict"] in ("helped", "hurt", "no clear difference")
        assert c["mean"] == pytest.approx(s[(arm, 1.0)]["dice"] - s[("real", 1.0)]["dice"])
    assert "vs_classical" in s[("pairs+classical", 1.0)]
    # fraction 0.6: a synthesizer per repeat's subset, as long as the classification study's (sqrt scaling)
    for s_ in (0, 1):
        ckpts = list_checkpoints(tmp_path / "seg" / "synthesizers" / f"f0.6-s{s_}" / "checkpoints")
        assert checkpoint_step(ckpts[-1]) == cfg.study.scaled_steps(cfg.train.steps, 0.6) < cfg.train.steps
    # a rerun trains nothing: every cell is read back
    monkeypatch.setattr(segmentation, "train_segmenter", lambda *a, **k: pytest.fail("retrained a cell"))
    again = run_seg_study(cfg, tiny_pairs_dir, tmp_path / "seg", tiny_spade_checkpoint)
    assert again["summary"] == study["summary"]
    text = "\n".join(_seg_study_section(study))
    assert (
        "## Segmentation study" in text and "pairs+classical x1" in text and "2 repeats per fraction" in text
    )
    # more repeats at one fraction: only the new repeat's cells are trained, the others read back
    trained: list[str] = []
    monkeypatch.setattr(
        segmentation, "train_segmenter", lambda *a, **k: trained.append(a[-1]) or real(*a, **k)
    )
    more = run_seg_study(
        _cfg(seeds={1.0: 3, 0.6: 2}), tiny_pairs_dir, tmp_path / "seg", tiny_spade_checkpoint
    )
    assert sorted(trained) == sorted(
        f"{a}-f1-s2" for a in ("real-r0", "classical-r0", "pairs-r1", "pairs+classical-r1")
    )
    n = {(r["arm"], r["fraction"]): r["vs_real"]["n"] for r in more["summary"] if "vs_real" in r}
    assert n[("pairs", 1.0)] == 3 and n[("pairs", 0.6)] == 2
    assert "repeats: 3 at fraction 1, 2 at fraction 0.6" in "\n".join(_seg_study_section(more))
    with pytest.raises(
        ConfigError, match=r"seg_study: seeds per fraction must name every fraction .*missing \[0.6\]"
    ):
        _cfg(seeds={1.0: 3})


def test_paired_differences_and_holm() -> None:
    rows = []
    for s, (r, p) in enumerate([(0.50, 0.55), (0.60, 0.66), (0.40, 0.44)]):
        base = {"fraction": 1.0, "seed": s, "n_real": 10, "hd95": 3.0, "n_synthetic": 0}
        rows += [
            {**base, "arm": "real", "ratio": None, "dice": r},
            {**base, "arm": "pairs", "ratio": 1.0, "dice": p, "n_synthetic": 10},
        ]
    out = {r["arm"]: r for r in summarize(rows)}
    c = out["pairs"]["vs_real"]
    assert c["mean"] == pytest.approx(0.05) and c["ci"][0] > 0 and c["verdict"] == "helped"
    assert c["p_holm"] == pytest.approx(c["p_value"])  # one comparison: Holm leaves it


def test_a_kind_without_masks_cannot_run_it(
    tiny_checkpoint: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    cfg = config_from_dict({**tiny_config(), "seg_study": {"run": True}})
    with pytest.raises(ConfigError, match=r"seg_study.run: model.kind 'cgan' makes no masks"):
        run_seg_study(cfg, tiny_data_dir, tmp_path / "s", tiny_checkpoint)


def test_the_classification_study_takes_a_spade_arm_trained_on_each_subsets_masks(
    tiny_pairs_dir: Path, tmp_path: Path
) -> None:
    import pandas as pd

    from medgan.study import run_study
    from tests.conftest import TINY_SPADE

    d = tiny_spade_config(steps=2)
    d["classifier"] = {"epochs": 2, "width": 4, "patience": 2, "batch_size": 16}
    d["study"] = {
        "arms": ["real", "spade"],
        "ratios": [0.5],
        "fractions": [1.0, 0.6],
        "seeds": 1,
        "n_boot": 20,
        "steps": {"spade": 2},
        "models": {"spade": {k: v for k, v in TINY_SPADE.items() if k != "kind"}},
    }
    d["gates"] = None
    run_study(config_from_dict(d), tiny_pairs_dir, tmp_path)
    res = pd.read_csv(tmp_path / "results.csv")
    assert set(res["arm"]) == {"real", "spade"} and len(res) == 4
