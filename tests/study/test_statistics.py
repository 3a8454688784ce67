"""Over-seed statistics of paired differences: t-interval, p-value, MDE, Holm, verdict words."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from medgan.study.statistics import detectable_line, holm, paired_summary, verdict


def test_paired_summary_matches_scipy() -> None:
    v = [0.012, -0.004, 0.021, 0.007, 0.015, float("nan"), None]
    sm = paired_summary(v)  # NaN / None ignored
    x = np.array([0.012, -0.004, 0.021, 0.007, 0.015])
    assert (
        sm["n"] == 5 and sm["mean"] == pytest.approx(x.mean()) and sm["std"] == pytest.approx(x.std(ddof=1))
    )
    assert sm["p_value"] == pytest.approx(stats.ttest_1samp(x, 0.0).pvalue, rel=1e-9)
    lo, hi = stats.t.interval(0.95, 4, loc=x.mean(), scale=stats.sem(x))
    assert sm["ci"] == pytest.approx((lo, hi))


def test_mde_formula() -> None:
    x = np.array([0.01, 0.03, -0.02, 0.0, 0.02, 0.015, -0.005, 0.01])
    n, sd = x.size, x.std(ddof=1)
    want = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n)
    assert paired_summary(x)["mde"] == pytest.approx(want)
    # alpha = 1 - level, power as given
    want90 = (stats.t.ppf(0.95, n - 1) + stats.t.ppf(0.9, n - 1)) * sd / math.sqrt(n)
    assert paired_summary(x, level=0.9, power=0.9)["mde"] == pytest.approx(want90)
    # more seeds, same spread: a smaller detectable difference
    assert paired_summary(np.tile(x, 4))["mde"] < paired_summary(x)["mde"]


def test_paired_summary_edge_cases() -> None:
    one = paired_summary([0.02])
    assert one["n"] == 1 and one["mean"] == 0.02
    assert all(math.isnan(one[k]) for k in ("std", "p_value", "mde")) and all(
        math.isnan(c) for c in one["ci"]
    )
    empty = paired_summary([float("nan")])
    assert empty["n"] == 0 and math.isnan(empty["mean"])
    flat0, flat = paired_summary([0.0, 0.0, 0.0]), paired_summary([0.01, 0.01, 0.01])
    assert flat0["p_value"] == 1.0 and flat["p_value"] == 0.0 and flat["mde"] == 0.0
    assert flat["ci"] == (0.01, 0.01)
    assert paired_summary([0.9, 1.1, 0.95], bounds=(-1.0, 1.0))["ci"][1] == 1.0
    with pytest.raises(ValueError, match="level"):
        paired_summary([1.0, 2.0], level=95)


def test_verdict_words() -> None:
    assert verdict((0.001, 0.02)) == "helped" and verdict([-0.03, -0.01]) == "hurt"
    assert verdict((-0.01, 0.02)) == "no clear difference" and verdict((0.0, 0.02)) == "no clear difference"
    assert verdict((float("nan"), float("nan"))) == "not computed" and verdict(None) == "not computed"
    assert verdict((0.01, 0.02), "better than classical", "worse than classical") == "better than classical"


def test_holm_hand_example() -> None:
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> 0.06 (monotone)
    got = holm([0.01, 0.04, None, 0.03, 0.005, float("nan")])
    assert got[:2] == pytest.approx([0.03, 0.06]) and got[3:5] == pytest.approx([0.06, 0.02])
    assert math.isnan(got[2]) and math.isnan(got[5])  # not counted: the family is 4
    assert holm([0.5, 0.4, 0.9]) == pytest.approx([1.0, 1.0, 1.0])  # capped at 1
    assert holm([]) == [] and all(math.isnan(p) for p in holm([None]))
    assert holm([0.02]) == [0.02]


def test_detectable_line() -> None:
    assert detectable_line(0.0312) == "this study could detect >= +0.031"
    assert "not computed" in detectable_line(float("nan")) and "not computed" in detectable_line(None)
    assert "did not vary over seeds" in detectable_line(0.0)  # zero spread: no claim of infinite power


def test_real_plus_share_only_where_the_control_was_detected() -> None:
    """The share of the ``real+`` gain an arm reached is given only where the study saw that gain:
    a share of an undetected +0.008 would read -0.003 / 0.008 = -38 %, which means nothing."""
    from medgan.study.summary import _real_plus_share

    summary = [
        {"arm": "real+", "ratio": 4.0, "fraction": 0.1, "auc_diff_vs_real": 0.10, "verdict": "helped"},
        {
            "arm": "real+",
            "ratio": 8.0,
            "fraction": 0.1,
            "auc_diff_vs_real": 0.008,
            "verdict": "no clear difference",
        },
        {"arm": "cgan", "ratio": 4.0, "fraction": 0.1, "auc_diff_vs_real": 0.05, "verdict": "helped"},
        {
            "arm": "cgan",
            "ratio": 8.0,
            "fraction": 0.1,
            "auc_diff_vs_real": -0.003,
            "verdict": "no clear difference",
        },
    ]
    _real_plus_share(summary)
    assert summary[2]["real_plus_share"] == pytest.approx(0.5)
    assert "real_plus_share" not in summary[3]
