"""The library-backed parts of the classifier metrics agree with the hand-written ones they sit beside."""

from __future__ import annotations

import math
import warnings

import numpy as np

from medgan.classifier.metrics import _auc_rows, _monai_auc, bootstrap_metrics, diagnostic_metrics


def test_monai_auc_equals_the_rank_auc_bit_for_bit_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(4, 60))
        y = rng.integers(0, 2, n)
        s = np.round(rng.random(n), 1)  # many ties
        want = _auc_rows(s[None], y == 1)[0]
        got = _monai_auc(s[:, None], (y == 1)[:, None])[0]
        assert (math.isnan(want) and math.isnan(got)) or want == got


def test_multiclass_point_auc_skips_absent_classes() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])  # class 2 absent
    p = np.array(
        [[0.6, 0.3, 0.1], [0.5, 0.2, 0.3], [0.2, 0.7, 0.1], [0.4, 0.4, 0.2], [0.3, 0.3, 0.4], [0.1, 0.5, 0.4]]
    )
    r = diagnostic_metrics(y, p)
    assert math.isnan(r["per_class"]["2"]["auc"])
    assert r["auc"] == np.mean([r["per_class"][c]["auc"] for c in ("0", "1")])


def test_bootstrap_quiet_deterministic_and_fine_with_a_single_member_class() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])  # class 2 has one member: the same in every replicate
    p = np.full((6, 3), 1 / 3) + np.linspace(-0.1, 0.1, 6)[:, None] * np.array([1, -1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warnings from scipy about NaN replicates or a single replicate
        a = bootstrap_metrics(y, p, n_boot=50, seed=3)
        assert a == bootstrap_metrics(y, p, n_boot=50, seed=3)
        one = bootstrap_metrics(y, p, n_boot=1, seed=3)
        assert all(lo == hi or (math.isnan(lo) and math.isnan(hi)) for lo, hi in one.values())
        only_singletons = bootstrap_metrics(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]]), n_boot=5)
    assert only_singletons["acc"] == (1.0, 1.0) and only_singletons["auc"] == (1.0, 1.0)
