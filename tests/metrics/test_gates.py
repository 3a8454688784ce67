"""Quality gates: pass / fail / off / not measured, plain sentences, and where the report puts them."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgan.config import GatesConfig, PipelineConfig, config_from_dict
from medgan.errors import ConfigError
from medgan.metrics.gates import (
    _at_least_gate,
    _fid_ratio_gate,
    _label_agreement_gate,
    _memorized_gate,
    check_gates,
    gates_passed,
    gates_verdict,
)
from tests.conftest import tiny_config

GOOD = {
    "fid": 30.0,
    "floor_fid": 20.0,
    "precision": 0.7,
    "recall": 0.5,
    "ms_ssim": 0.3,
    "ms_ssim_real": 0.25,
    "label_agreement": {"agreement": 0.80, "real_test_acc": 0.84},
    "cas": {"auc": 0.85, "real_auc": 0.9},
    "memorized_count": 0,
}


def test_every_default_gate_passes_good_metrics() -> None:
    res = check_gates(GOOD, GatesConfig())
    assert [r.gate for r in res] == [
        "fid_ratio_max",
        "precision_min",
        "recall_min",
        "ms_ssim_max",
        "label_agreement_margin",
        "cas_auc_min",
        "memorized_max",
    ]
    assert all(r.passed for r in res) and gates_passed(res)
    by = {r.gate: r for r in res}
    assert by["fid_ratio_max"].value == pytest.approx(1.5) and by["fid_ratio_max"].threshold == 2.0
    assert by["label_agreement_margin"].threshold == pytest.approx(0.79)  # test accuracy - 0.05
    assert gates_verdict("cgan", res) == "cgan passes all 7 quality gates."


@pytest.mark.parametrize(
    ("change", "gate"),
    [
        ({"fid": 41.0}, "fid_ratio_max"),  # 2.05x the floor
        ({"precision": 0.49}, "precision_min"),
        ({"recall": 0.29}, "recall_min"),
        ({"ms_ssim": 0.51}, "ms_ssim_max"),
        ({"label_agreement": {"agreement": 0.78, "real_test_acc": 0.84}}, "label_agreement_margin"),
        ({"cas": {"auc": 0.79}}, "cas_auc_min"),
        ({"memorized_count": 1}, "memorized_max"),
    ],
)
def test_each_gate_fails_just_past_its_threshold(change: dict, gate: str) -> None:
    res = check_gates({**GOOD, **change}, GatesConfig())
    failed = [r for r in res if r.passed is False]
    assert [r.gate for r in failed] == [gate] and not gates_passed(res)
    assert "failed" in failed[0].sentence and failed[0].sentence.endswith(".")
    assert gates_verdict("cgan", res).startswith(f"cgan fails 1 of 7 quality gates ({failed[0].metric})")


def test_gates_off_and_not_measured() -> None:
    off = GatesConfig(fid_ratio_max=None, cas_auc_min=None)
    res = check_gates({**GOOD, "fid": 1e6, "cas": {"auc": 0.1}}, off)
    assert len(res) == 5 and gates_passed(res)  # the two failing metrics' gates are off
    assert check_gates(GOOD, None) == []
    assert not GatesConfig(**dict.fromkeys(GatesConfig.model_fields)).active()
    # label scores off, no floor: not measured, which neither passes nor fails
    bare = {k: v for k, v in GOOD.items() if k not in ("label_agreement", "cas")} | {"floor_fid": None}
    res = check_gates(bare, GatesConfig())
    unmeasured = {r.gate for r in res if r.passed is None}
    assert unmeasured == {"fid_ratio_max", "label_agreement_margin", "cas_auc_min"}
    assert gates_passed(res) and "not measured" in gates_verdict("cgan", res)
    assert all(r.value is None and "not measured" in r.sentence for r in res if r.passed is None)


def test_single_gate_steps_at_their_thresholds() -> None:
    # a value exactly at the threshold passes
    at = _at_least_gate({"recall": 0.3}, "recall_min", "recall", "recall", "good", "bad.", 0.3)
    assert at.passed is True and at.sentence == "Recall is 0.30; the gate needs at least 0.30: passed, good."
    unmeasured = _at_least_gate({"recall": "n/a"}, "recall_min", "recall", "recall", "good", "bad.", 0.3)
    assert unmeasured.passed is None and unmeasured.value is None
    assert unmeasured.sentence == "recall was not measured (too few slices, or not computed)."
    assert _fid_ratio_gate({"fid": 40.0, "floor_fid": 20.0}, 2.0).passed is True
    assert _fid_ratio_gate({"fid": 40.0, "floor_fid": 0.0}, 2.0).passed is None  # no usable floor
    assert _fid_ratio_gate({"fid": float("nan"), "floor_fid": 20.0}, 2.0).passed is None
    la = _label_agreement_gate({"label_agreement": {"agreement": 0.7, "real_test_acc": 0.8}}, 0.05)
    assert la.threshold == pytest.approx(0.75) and la.passed is False
    mem = _memorized_gate({"memorized_count": 2}, 2)
    assert mem.passed is True and mem.threshold == 2.0 and isinstance(mem.threshold, float)


def test_gates_and_pipeline_config() -> None:
    cfg = config_from_dict({**tiny_config(), "gates": {"recall_min": 0.4, "cas_auc_min": None}})
    assert cfg.gates is not None and cfg.gates.recall_min == 0.4 and cfg.gates.cas_auc_min is None
    assert cfg.gates.fid_ratio_max == 2.0 and cfg.gates.memorized_max == 0
    assert config_from_dict({**tiny_config(), "gates": None}).gates is None
    with pytest.raises(ConfigError, match=r"gates\.recall_min"):
        config_from_dict({**tiny_config(), "gates": {"recall_min": 1.5}})
    with pytest.raises(ConfigError, match=r"gates\.fid_max"):
        config_from_dict({**tiny_config(), "gates": {"fid_max": 3}})
    assert PipelineConfig().eval_per_class is None and PipelineConfig().eval_n is None
    with pytest.raises(ConfigError, match="not both"):
        config_from_dict({**tiny_config(), "pipeline": {"eval_n": 10, "eval_per_class": 5}})


def test_report_states_failed_gates_before_the_study_table(tmp_path: Path) -> None:
    from medgan.metrics.evaluate import gate_report
    from medgan.report import build_report

    failing = gate_report({**GOOD, "recall": 0.05}, GatesConfig(), "cgan")
    passing = gate_report(GOOD, GatesConfig(), "cyclegan-f1")
    study = {
        "n_test": 8,
        "n_train": 40,
        "n_val": 8,
        "study": {"seeds": 2, "skip_failing_synthesizers": True},
        "summary": [
            {"arm": "real", "ratio": None, "fraction": 1.0, "seeds": 2, "auc": 0.8, "auc_ci": [0.7, 0.9]},
            {
                "arm": "cgan",
                "ratio": 0.5,
                "fraction": 1.0,
                "seeds": 0,
                "verdict": "skipped: the synthesizer failed the quality gates",
            },
        ],
    }
    md_path, html_path = build_report(
        tmp_path, "t", {"gates": {"cgan-f1": failing, "cyclegan-f1": passing}, "study": study}
    )
    md = md_path.read_text()
    gates_at, table_at = md.index("## Quality gates"), md.index("## Does synthetic data help")
    assert gates_at < table_at
    section = md[gates_at:table_at]
    assert "**FAILED: cgan-f1 fails 1 of 7 quality gates (recall)" in section
    assert "Recall is 0.05; the gate needs at least 0.30: failed" in section
    assert "Passed: cyclegan-f1 passes all 7 quality gates." in section
    assert "were skipped (study.skip_failing_synthesizers: true)" in section
    assert "Skipped because their synthesizer failed the quality gates" in md[table_at:]
    assert "<b>FAILED: cgan-f1" in html_path.read_text()
