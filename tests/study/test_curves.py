"""The real-data learning curve (isotonic in N, linear in log N) and an arm's worth in real slices."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medgan.study.curves import LearningCurve, isotonic, worth_real_slices


def test_isotonic_pava() -> None:
    assert isotonic([1, 3, 2, 4, 3.5, 5]).tolist() == pytest.approx([1, 2.5, 2.5, 3.75, 3.75, 5])
    assert isotonic([3, 2, 1]).tolist() == pytest.approx([2, 2, 2])
    assert isotonic([1, 3, 2], weights=[1, 3, 1]).tolist() == pytest.approx([1, 2.75, 2.75])
    assert isotonic([0.5, 0.7]).tolist() == [0.5, 0.7] and isotonic([]).size == 0
    with pytest.raises(ValueError):
        isotonic([1.0, 2.0], weights=[1.0])


def test_curve_fit_means_and_monotone() -> None:
    c = LearningCurve.fit([100, 100, 50, 200, 400, float("nan")], [0.72, 0.70, 0.70, 0.69, 0.80, 0.9])
    assert c.n.tolist() == [50, 100, 200, 400]
    # per-N means 0.70, 0.71, 0.69 (pooled with 0.71, weights 2 and 1 -> 0.7033), 0.80
    assert c.auc.tolist() == pytest.approx([0.70, (0.72 + 0.70 + 0.69) / 3, (0.72 + 0.70 + 0.69) / 3, 0.80])
    assert LearningCurve.from_dict(c.to_dict()).auc.tolist() == pytest.approx(c.auc.tolist())
    with pytest.raises(ValueError):
        LearningCurve.fit([0, float("nan")], [0.5, 0.6])


def test_auc_at_and_n_at_invert_with_censoring() -> None:
    c = LearningCurve(np.array([50.0, 200.0, 800.0]), np.array([0.70, 0.76, 0.76]))
    assert c.auc_at(100.0) == pytest.approx(0.73)  # halfway in log N
    assert c.auc_at(10.0) == 0.70 and c.auc_at(5000.0) == 0.76  # clamped
    n, flag = c.n_at(0.73)
    assert n == pytest.approx(100.0) and flag is None
    for x in (60.0, 123.0, 190.0):
        assert c.n_at(c.auc_at(x))[0] == pytest.approx(x)
    assert c.n_at(0.76) == (200.0, None)  # a flat segment: its left end
    assert c.n_at(0.70) == (50.0, "below") and c.n_at(0.6) == (50.0, "below")
    assert c.n_at(0.77) == (800.0, "above")


def _cells(rng: np.random.Generator, noise: float = 0.004) -> tuple[pd.DataFrame, dict[float, int]]:
    """Real and real+ cells on a known curve AUC = 0.6 + 0.05 ln(N / 50)."""
    rows = []
    base = {0.1: 50, 0.25: 125, 1.0: 500}
    for f, nb in base.items():
        for s in range(8):
            for r in (0.0, 0.5, 1.0, 2.0):
                n = nb * (1 + r)
                rows.append({"fraction": f, "seed": s, "n": n, "auc": _truth(n) + rng.normal(0, noise)})
    return pd.DataFrame(rows), base


def _truth(n: float) -> float:
    return 0.6 + 0.05 * math.log(n / 50)


def test_worth_recovers_a_known_gain() -> None:
    rng = np.random.default_rng(3)
    cells, _ = _cells(rng)
    # the arm at fraction 0.1 (50 real slices) gains what 50 more real slices give: worth 50
    gain = _truth(100) - _truth(50)
    diffs = {s: gain + rng.normal(0, 0.004) for s in range(8)}
    w = worth_real_slices(cells, 0.1, 50.0, diffs, n_boot=400, seed=1)
    assert w["censored"] is None and w["n_base"] == 50.0
    assert w["ci"][0] < 50 < w["ci"][1] and abs(w["worth"] - 50) < 15
    assert w == worth_real_slices(cells, 0.1, 50.0, diffs, n_boot=400, seed=1)  # deterministic for a seed
    assert w["ci"] != worth_real_slices(cells, 0.1, 50.0, diffs, n_boot=400, seed=2)["ci"]


def test_worth_negative_and_censored() -> None:
    rng = np.random.default_rng(4)
    cells, _ = _cells(rng, noise=0.001)
    hurt = worth_real_slices(cells, 0.25, 125.0, dict.fromkeys(range(8), -0.02), n_boot=50)
    assert hurt["worth"] < 0 and hurt["censored"] is None  # worth fewer than 0 extra real slices
    huge = worth_real_slices(cells, 1.0, 500.0, dict.fromkeys(range(8), 0.5), n_boot=50)
    assert huge["censored"] == "above" and huge["worth"] == pytest.approx(1000.0)  # at least 1000 more
    low = worth_real_slices(cells, 0.1, 50.0, dict.fromkeys(range(8), -0.05), n_boot=50)
    assert low["censored"] == "below" and low["worth"] == pytest.approx(0.0)
    none = worth_real_slices(cells, 0.1, 50.0, {}, n_boot=50)
    assert math.isnan(none["worth"]) and none["censored"] is None
